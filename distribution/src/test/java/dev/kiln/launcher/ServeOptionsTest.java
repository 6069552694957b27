package dev.kiln.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import org.junit.jupiter.api.Test;

/** The byte sizes `kiln serve --kv-cache-memory` accepts, and the element types of `--kv-cache-dtype`. */
class ServeOptionsTest {
    @Test
    void sizesTakeBinarySuffixes() {
        assertEquals(123L, ServeCommand.parseBytes("123"));
        assertEquals(512L << 10, ServeCommand.parseBytes("512K"));
        assertEquals(64L << 20, ServeCommand.parseBytes("64m"));
        assertEquals(8L << 30, ServeCommand.parseBytes(" 8G "));
    }

    @Test
    void anythingElseIsNotASize() {
        assertNull(ServeCommand.parseBytes("8GB"));
        assertNull(ServeCommand.parseBytes("-1"));
        assertNull(ServeCommand.parseBytes("1.5G"));
        assertNull(ServeCommand.parseBytes(""));
        assertNull(ServeCommand.parseBytes("99999999999999999999G"));
        assertNull(ServeCommand.parseBytes("9999999999999G"));
    }

    @Test
    void cacheElementTypesAreAutoF32OrBf16() {
        assertEquals("auto", ServeCommand.kvCacheDtype("auto"));
        assertEquals("f32", ServeCommand.kvCacheDtype("F32"));
        assertEquals("bf16", ServeCommand.kvCacheDtype(" bf16 "));
        assertNull(ServeCommand.kvCacheDtype("fp16"));
        assertNull(ServeCommand.kvCacheDtype("bfloat16"));
        assertNull(ServeCommand.kvCacheDtype(""));
    }
}
