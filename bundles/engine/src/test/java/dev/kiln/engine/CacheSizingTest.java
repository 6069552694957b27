package dev.kiln.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.DeviceInfo;
import dev.kiln.api.tensor.DType;
import org.junit.jupiter.api.Test;

/** The automatic KV cache size: bounded by 1 GiB on the CPU, by the device's memory on a GPU. */
class CacheSizingTest {
    // 28 layers, 2 KV heads of 128, f32: 57,344 bytes a token (the R1-Distill-Qwen-1.5B shape).
    private static final KvCacheSpec SPEC = new KvCacheSpec(28, 2, 128, 128, false, DType.F32);
    private static final long BLOCK = 16 * SPEC.bytesPerToken();

    @Test
    void theCpuTakesWhatTheSequencesNeedUpToOneGibibyte() {
        var cpu = new DeviceInfo("cpu", "2 cores", 2, 24L << 30);
        assertEquals(1L << 30, InferenceEngineCore.automaticCacheMemory(SPEC, 131072, 64, BLOCK, cpu, 3_550_000_000L));
        assertEquals(SPEC.bytesPerToken() * 448 * 4, InferenceEngineCore.automaticCacheMemory(SPEC, 448, 4, BLOCK, cpu, 0));
    }

    @Test
    void aGpuTakesItsMemoryLessTheWeightsAndHeadroom() {
        long total = 80L << 30, weights = 3_550_000_000L;
        var gpu = new DeviceInfo("cuda", "H100", 132, total);
        long expected = (long) (total * InferenceEngineCore.DEVICE_MEMORY_SHARE) - weights
                - (InferenceEngineCore.DEVICE_HEADROOM_GIB << 30);
        assertEquals(expected, InferenceEngineCore.automaticCacheMemory(SPEC, 131072, 64, BLOCK, gpu, weights));
        // Fewer sequences than the device holds: what they need.
        assertEquals(SPEC.bytesPerToken() * 448 * 128, InferenceEngineCore.automaticCacheMemory(SPEC, 448, 128, BLOCK, gpu, weights));
        // A device too small for its weights still gets the CPU's default, and at least a block.
        var tiny = new DeviceInfo("cuda", "small", 10, 4L << 30);
        assertEquals(1L << 30, InferenceEngineCore.automaticCacheMemory(SPEC, 131072, 64, BLOCK, tiny, weights));
        assertEquals(BLOCK, InferenceEngineCore.automaticCacheMemory(SPEC, 1, 1, BLOCK, tiny, weights));
    }
}
