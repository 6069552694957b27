package dev.kiln.backend.cuda;

import static dev.kiln.backend.cuda.testing.Fixtures.BLOCK_SIZE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.backend.cuda.internal.Kernels;
import dev.kiln.backend.cuda.testing.Fixtures;
import dev.kiln.backend.cuda.testing.Gpu;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Decode steps padded as the engine pads them for the CUDA backend ({@link CudaBackend#decodeBatchSize}: sequences
 * of one token that store nothing and want no logits) give the real sequences the logits of the unpadded steps. The
 * products of 5 and of 8 or 16 tokens take different kernels (token tiles, row groups, cuBLAS where a row is not
 * whole 64-column chunks), which may sum in another order: the logits must agree to 1e-4 of their scale, and the padding must not have written the cache (the unpadded run
 * continues from the same cache contents).
 */
class CudaPaddedDecodeTest {
    private static final int SEQUENCES = 5;
    private static final int STEPS = 12;
    private static final int NUM_BLOCKS = 100;

    private static CudaBackend gpu;

    @BeforeAll
    static void start() {
        gpu = Gpu.backend();
    }

    @Test
    void theBackendPadsDecodeStepsBeyondTheGemvKernelsToAFewSizes() {
        // Up to the GEMV kernels' limit (8 tokens unless lowered) every count has kernels of its own: no padding.
        assertEquals(8, Kernels.GEMV_TOKEN_LIMIT, "these expectations are for the default limit");
        assertEquals(1, gpu.decodeBatchSize(1));
        assertEquals(4, gpu.decodeBatchSize(4));
        assertEquals(5, gpu.decodeBatchSize(5));
        assertEquals(8, gpu.decodeBatchSize(8));
        assertEquals(16, gpu.decodeBatchSize(9));
        assertEquals(32, gpu.decodeBatchSize(17));
        assertEquals(128, gpu.decodeBatchSize(128));
        assertEquals(192, gpu.decodeBatchSize(129));
    }

    @Test
    void paddedStepsGiveTheRealSequencesTheLogitsOfUnpaddedOnes() {
        for (String fixture : new String[] {"qwen2-tiny", "deepseek-v3-tiny"}) {
            List<float[]> plain = decode(fixture, SEQUENCES);
            for (int padTo : new int[] {8, 16}) {
                List<float[]> padded = decode(fixture, padTo);
                for (int step = 0; step < plain.size(); step++) {
                    float[] a = plain.get(step), b = padded.get(step);
                    assertEquals(a.length, b.length, "logit rows of step " + step);
                    double scale = 1, diff = 0;
                    for (int i = 0; i < a.length; i++) {
                        scale = Math.max(scale, Math.abs(a[i]));
                        diff = Math.max(diff, Math.abs(a[i] - b[i]));
                    }
                    assertTrue(diff <= 1e-4 * scale, fixture + " step " + step + " padded to " + padTo + ": logits differ by "
                            + diff + " (scale " + scale + ")");
                }
            }
        }
    }

    /** Prefills SEQUENCES prompts, then decodes them greedily, each step padded to padTo; every step's logits. */
    private static List<float[]> decode(String fixture, int padTo) {
        int[] prompt = Fixtures.ints(fixture, "input_ids_0");
        try (CausalLanguageModel model = Fixtures.build(fixture, gpu, Gpu.attention(), 256);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            List<float[]> steps = Fixtures.greedyDecode(gpu, model, cache, prompt, SEQUENCES, NUM_BLOCKS, STEPS, padTo,
                    s -> Math.max(1, prompt.length - 2 * s));
            return steps.subList(1, steps.size()); // the decode steps: the prefill is not padded
        }
    }
}
