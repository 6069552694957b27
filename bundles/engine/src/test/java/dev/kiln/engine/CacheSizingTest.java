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

    // The same shape stored as bf16: 28 layers x 2 KV heads x (128 + 128) x 2 bytes = 28,672 bytes a token.
    private static final KvCacheSpec BF16 = new KvCacheSpec(28, 2, 128, 128, false, DType.BF16);
    // DeepSeek-V3's MLA cache: 61 layers, one latent entry of 512 + 64 holding the value, no separate values.
    private static final KvCacheSpec MLA_BF16 = new KvCacheSpec(61, 1, 576, 512, true, DType.BF16);

    @Test
    void aBf16CacheTakesTwoBytesAnElement() {
        assertEquals(28L * 2 * (128 + 128) * 2, BF16.bytesPerToken());
        assertEquals(SPEC.bytesPerToken() / 2, BF16.bytesPerToken());
        assertEquals(61L * 576 * 2, MLA_BF16.bytesPerToken());
        assertEquals(61L * 576 * 4, new KvCacheSpec(61, 1, 576, 512, true, DType.F32).bytesPerToken());
    }

    @Test
    void bf16HoldsTwiceTheTokensInTheSameMemory() {
        long block = 16 * BF16.bytesPerToken();
        var cpu = new DeviceInfo("cpu", "2 cores", 2, 24L << 30);
        // What the sequences need is half the f32 figure, so the 1 GiB cap binds later.
        assertEquals(BF16.bytesPerToken() * 448 * 4, InferenceEngineCore.automaticCacheMemory(BF16, 448, 4, block, cpu, 0));
        assertEquals(SPEC.bytesPerToken() * 448 * 4 / 2, InferenceEngineCore.automaticCacheMemory(BF16, 448, 4, block, cpu, 0));
        // A capped cache: the same bytes, twice the blocks.
        long memory = InferenceEngineCore.automaticCacheMemory(BF16, 131072, 64, block, cpu, 0);
        assertEquals(1L << 30, memory);
        assertEquals(2 * ((1L << 30) / BLOCK), memory / block);
        // On a GPU the cap is the device's memory less the weights and headroom, whatever the element type.
        long total = 80L << 30, weights = 3_550_000_000L;
        var gpu = new DeviceInfo("cuda", "H100", 132, total);
        assertEquals(InferenceEngineCore.automaticCacheMemory(SPEC, 131072, 64, BLOCK, gpu, weights),
                InferenceEngineCore.automaticCacheMemory(BF16, 131072, 64, block, gpu, weights));
    }
}
