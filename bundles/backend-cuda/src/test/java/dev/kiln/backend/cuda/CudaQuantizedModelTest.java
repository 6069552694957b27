package dev.kiln.backend.cuda;

import static dev.kiln.backend.cuda.testing.Data.maxAbs;
import static dev.kiln.backend.cuda.testing.Data.maxAbsDiff;
import static dev.kiln.backend.cuda.testing.Fixtures.BLOCK_SIZE;
import static dev.kiln.backend.cuda.testing.Fixtures.blocks;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.attention.paged.PagedAttention;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.backend.cuda.testing.Fixtures;
import dev.kiln.backend.cuda.testing.Gpu;
import dev.kiln.quant.fp8.Fp8Quantizer;
import dev.kiln.quant.int4.Int4Quantizer;
import dev.kiln.quant.int8.Int8Quantizer;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The {@code qwen2-tiny} and {@code deepseek-v3-tiny} fixtures (whose quantized routed experts take the device's
 * grouped products) built with each CUDA weight format against the same fixture built with the CPU
 * bundle's quantizer of that format, on the same engine-shaped batches: both quantize the same weights by the same
 * rule, so their logits differ only by the order of f32 sums and by the device prefill's bf16 splits. The batches
 * take both device paths: prefills of many tokens (dequantized tiles and cuBLAS) and steps of 1 and 5 tokens
 * (streaming GEMVs; the 1-token step of INT8, FP8 and INT4 in groups of 128 through the token GEMVs with the
 * recorder's fusions: q/k/v with their biases in one launch, the norms folded in (not INT4's), gate/up with the gating,
 * the residual adds; INT4 in groups of 64 through its own GEMVs). Runs only where a CUDA device is.
 */
class CudaQuantizedModelTest {
    private static final String FIXTURE = "qwen2-tiny";
    /** Relative to the largest CPU logit of the step. */
    private static final double RELATIVE_TOLERANCE = 1e-3;
    private static final int MAX_BATCH_TOKENS = 1024;
    private static final int NUM_BLOCKS = 160;

    private static CudaBackend gpu;
    private static CpuBackend cpu;

    @BeforeAll
    static void start() {
        gpu = Gpu.backend();
        cpu = new CpuBackend(2);
    }

    @AfterAll
    static void stop() {
        if (cpu != null) cpu.shutdown();
    }

    /**
     * Each format on each fixture: the format's name, the device's quantizer, the CPU bundle's, and the fixture (a
     * dense model, and a mixture-of-experts one whose quantized experts route on the device).
     */
    static List<Object[]> formats() {
        List<Object[]> cases = new java.util.ArrayList<>();
        for (String fixture : new String[] {FIXTURE, "deepseek-v3-tiny"}) {
            cases.add(new Object[] {"weight_only_int8", new CudaInt8Quantizer(), new Int8Quantizer(), fixture});
            cases.add(new Object[] {"weight_only_int4 g64", new CudaInt4Quantizer(64), new Int4Quantizer(64), fixture});
            cases.add(new Object[] {"weight_only_int4 g128", new CudaInt4Quantizer(128), new Int4Quantizer(128), fixture});
            cases.add(new Object[] {"fp8", new CudaFp8Quantizer(), new Fp8Quantizer(), fixture});
        }
        return cases;
    }

    @ParameterizedTest(name = "{0} {3}")
    @MethodSource("formats")
    void theSameBatchesGiveTheCpuFormatsLogits(String format, Quantizer onGpu, Quantizer onCpu, String fixture) {
        try (CausalLanguageModel g = Fixtures.build(fixture, gpu, Gpu.attention(), onGpu, MAX_BATCH_TOKENS);
             CausalLanguageModel c = Fixtures.build(fixture, cpu, new PagedAttention(), onCpu, MAX_BATCH_TOKENS);
             CausalLanguageModel dense = Fixtures.build(fixture, gpu, Gpu.attention(), MAX_BATCH_TOKENS);
             KvCache gc = g.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE);
             KvCache cc = c.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            // Each backend pads rows to its own kernels' widths, so the two byte counts may differ a little.
            System.out.printf("%s %s: weights %d bytes on the device (bf16: %d; the CPU format: %d)%n", format, fixture,
                    g.weightBytes(), dense.weightBytes(), c.weightBytes());
            assertTrue(g.weightBytes() < dense.weightBytes(), "quantized weights take fewer bytes than bf16");

            int[] first = Fixtures.ints(fixture, "input_ids_0");
            int[] greedy = Fixtures.ints(fixture, "greedy_ids_1");
            int cached = Fixtures.ints(fixture, "input_ids_1").length;
            int[] decoding = blocks(0, (cached + 2 + BLOCK_SIZE - 1) / BLOCK_SIZE);
            int[] verifying = blocks(decoding.length, (cached + 4 + BLOCK_SIZE - 1) / BLOCK_SIZE);
            int[] chunkBlocks = blocks(decoding.length + verifying.length, (first.length + BLOCK_SIZE - 1) / BLOCK_SIZE);
            int chunk = Math.min(20, first.length);
            ForwardBatch[] steps = {
                    // Two prompts prefilled together, every logit wanted: the prefill path.
                    new Fixtures.Batch().addEveryLogit(decoding, 0, Arrays.copyOf(greedy, cached))
                            .addEveryLogit(verifying, 0, Arrays.copyOf(greedy, cached)).build(),
                    // One decode token: the one-token GEMV.
                    new Fixtures.Batch().add(decoding, cached, new int[] {greedy[cached]}).build(),
                    // A decode token and a verification of four: the five-token GEMV.
                    new Fixtures.Batch().add(decoding, cached + 1, new int[] {greedy[cached + 1]})
                            .addEveryLogit(verifying, cached, Arrays.copyOfRange(greedy, cached, cached + 4)).build(),
                    // A chunk of a third prompt, then its rest: the prefill path with other lengths.
                    new Fixtures.Batch().add(chunkBlocks, 0, Arrays.copyOf(first, chunk)).build(),
                    new Fixtures.Batch().addEveryLogit(chunkBlocks, chunk, Arrays.copyOfRange(first, chunk, first.length))
                            .build()};
            for (int s = 0; s < steps.length; s++) {
                float[] onDevice = gpu.read(g.forward(steps[s], gc).logits());
                float[] onHost = cpu.read(c.forward(steps[s], cc).logits());
                double diff = maxAbsDiff(onDevice, onHost);
                double relative = diff / Math.max(1, maxAbs(onHost));
                System.out.printf("%s %s step %d (%d tokens): CUDA vs CPU max |diff| = %.2e, relative %.2e%n", format,
                        fixture, s, steps[s].numTokens(), diff, relative);
                assertTrue(relative < RELATIVE_TOLERANCE, format + " step " + s + ": CUDA and CPU logits differ by "
                        + diff + " (relative " + relative + ")");
            }
        }
    }
}
