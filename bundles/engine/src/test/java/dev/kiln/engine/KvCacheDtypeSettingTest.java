package dev.kiln.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.tensor.DType;
import org.junit.jupiter.api.Test;

/** The engine's {@code kv-cache-dtype} setting: what it accepts and what element type it gives on each backend. */
class KvCacheDtypeSettingTest {
    @Test
    void acceptsAutoF32AndBf16InAnyCaseAndDefaultsToAuto() {
        assertEquals(KvCacheDtypeSetting.AUTO, KvCacheDtypeSetting.parse(null));
        assertEquals(KvCacheDtypeSetting.AUTO, KvCacheDtypeSetting.parse(""));
        assertEquals(KvCacheDtypeSetting.AUTO, KvCacheDtypeSetting.parse("  "));
        assertEquals(KvCacheDtypeSetting.AUTO, KvCacheDtypeSetting.parse("auto"));
        assertEquals(KvCacheDtypeSetting.F32, KvCacheDtypeSetting.parse("f32"));
        assertEquals(KvCacheDtypeSetting.F32, KvCacheDtypeSetting.parse("F32"));
        assertEquals(KvCacheDtypeSetting.BF16, KvCacheDtypeSetting.parse(" bf16 "));
        assertEquals(KvCacheDtypeSetting.BF16, KvCacheDtypeSetting.parse("BF16"));
        for (KvCacheDtypeSetting s : KvCacheDtypeSetting.values()) assertEquals(s, KvCacheDtypeSetting.parse(s.toString()));
    }

    @Test
    void refusesAnythingElseNamingTheSetting() {
        for (String wrong : new String[] {"fp16", "f16", "bfloat16", "fp8", "int8", "float"}) {
            var e = assertThrows(IllegalArgumentException.class, () -> KvCacheDtypeSetting.parse(wrong));
            assertTrue(e.getMessage().contains("kv-cache-dtype") && e.getMessage().contains(wrong), e.getMessage());
        }
    }

    @Test
    void autoIsBf16OnCudaAndF32Elsewhere() {
        assertEquals(DType.BF16, KvCacheDtypeSetting.AUTO.resolve("cuda"));
        assertEquals(DType.F32, KvCacheDtypeSetting.AUTO.resolve("cpu"));
        assertEquals(DType.F32, KvCacheDtypeSetting.AUTO.resolve("some-other-backend"));
        assertEquals(DType.F32, KvCacheDtypeSetting.F32.resolve("cuda"));
        assertEquals(DType.F32, KvCacheDtypeSetting.F32.resolve("cpu"));
        assertEquals(DType.BF16, KvCacheDtypeSetting.BF16.resolve("cuda"));
    }

    @Test
    void bf16OnTheCpuBackendFailsClearly() {
        var e = assertThrows(IllegalArgumentException.class, () -> KvCacheDtypeSetting.BF16.resolve("cpu"));
        assertTrue(e.getMessage().startsWith("kv-cache-dtype bf16"), e.getMessage());
        assertTrue(e.getMessage().contains("cpu backend"), e.getMessage());
        // Through a backend object: its name decides.
        e = assertThrows(IllegalArgumentException.class,
                () -> KvCacheDtypeSetting.BF16.resolve(dev.kiln.engine.testing.Fixtures.backend()));
        assertTrue(e.getMessage().contains("kv-cache-dtype"), e.getMessage());
    }
}
