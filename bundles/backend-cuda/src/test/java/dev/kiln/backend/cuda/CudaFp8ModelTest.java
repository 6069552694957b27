package dev.kiln.backend.cuda;

import static dev.kiln.backend.cuda.testing.Data.maxAbs;
import static dev.kiln.backend.cuda.testing.Data.maxAbsDiff;
import static dev.kiln.backend.cuda.testing.Fixtures.BLOCK_SIZE;
import static dev.kiln.backend.cuda.testing.Fixtures.blocks;
import static dev.kiln.backend.cuda.testing.Fixtures.rows;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.attention.paged.PagedAttention;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.backend.cuda.testing.Fixtures;
import dev.kiln.backend.cuda.testing.Gpu;
import dev.kiln.loader.safetensors.SafetensorsCheckpointLoader;
import dev.kiln.models.runner.SequenceRunner;
import dev.kiln.quant.fp8.Fp8Quantizer;
import java.io.IOException;
import java.util.Arrays;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * DeepSeek-V3 with FP8 block weights on the device: the {@code deepseek-v3-tiny-fp8} fixture (its F8_E4M3 layers and
 * {@code weight_scale_inv} read as stored, partial edge blocks) built on CUDA with {@link CudaFp8Quantizer}: logits at
 * every prompt position and the greedy continuation (tokens and logits) against the float64 reference, which
 * dequantized the same weights; the same engine-shaped batches against the CPU backend with the CPU bundle's
 * {@code fp8} quantizer (prefills through the dequantizing path, 1- and 5-token steps through the GEMVs); and the bf16
 * {@code deepseek-v3-tiny} quantized on load by both backends' quantizers. Runs only where a CUDA device is.
 */
class CudaFp8ModelTest {
    private static final String FIXTURE = "deepseek-v3-tiny-fp8";
    /** The fixtures README's bound for float32 engines (max |logit - reference|). */
    private static final double REFERENCE_TOLERANCE = 1e-3;
    /**
     * CUDA against the CPU on the same FP8 weights, relative to the largest CPU logit: f32 sums in another order, and the
     * prefill's weights and activations split into bf16 pairs (~16 bits each).
     */
    private static final double CPU_RELATIVE_TOLERANCE = 1e-4;
    private static final int MAX_BATCH_TOKENS = 256;
    private static final int NUM_BLOCKS = 64;

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

    private static CausalLanguageModel onGpu(String fixture) {
        return Fixtures.build(fixture, gpu, Gpu.attention(), new CudaFp8Quantizer(), MAX_BATCH_TOKENS);
    }

    private static CausalLanguageModel onCpu(String fixture) {
        return Fixtures.build(fixture, cpu, new PagedAttention(), new Fp8Quantizer(), MAX_BATCH_TOKENS);
    }

    @Test
    void prefillLogitsMatchTheReferenceAtEveryPosition() {
        try (CausalLanguageModel model = onGpu(FIXTURE); KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            int next = 0;
            for (int i = 0; i < 2; i++) {
                int[] prompt = Fixtures.ints(FIXTURE, "input_ids_" + i);
                int n = (prompt.length + BLOCK_SIZE - 1) / BLOCK_SIZE;
                ForwardBatch batch = new Fixtures.Batch().addEveryLogit(blocks(next, n), 0, prompt).build();
                next += n;
                float[] logits = gpu.read(model.forward(batch, cache).logits());
                float[] reference = Fixtures.floats(FIXTURE, "logits_" + i);
                double diff = maxAbsDiff(logits, reference);
                System.out.printf("CUDA fp8 %s prompt %d (%d tokens): max |logit - reference| = %.2e (logits up to %.1f)%n",
                        FIXTURE, i, prompt.length, diff, maxAbs(reference));
                assertTrue(diff < REFERENCE_TOLERANCE, FIXTURE + " prompt " + i + ": logits differ by " + diff);
            }
        }
    }

    @Test
    void greedyDecodingReproducesTheReferenceTokensAndLogits() {
        try (CausalLanguageModel model = onGpu(FIXTURE); KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            int vocab = model.vocabSize();
            int next = 0;
            for (int i = 0; i < 2; i++) {
                int[] prompt = Fixtures.ints(FIXTURE, "input_ids_" + i);
                int[] greedy = Fixtures.ints(FIXTURE, "greedy_ids_" + i);
                float[] greedyLogits = Fixtures.floats(FIXTURE, "greedy_logits_" + i);
                int n = (greedy.length + BLOCK_SIZE - 1) / BLOCK_SIZE;
                var runner = new SequenceRunner(model, cache, blocks(next, n));
                next += n;
                double worst = 0;
                float[] logits = runner.append(prompt);
                for (int position = prompt.length; position < greedy.length; position++) {
                    double diff = maxAbsDiff(logits, rows(greedyLogits, vocab, position - 1, position));
                    worst = Math.max(worst, diff);
                    assertTrue(diff < REFERENCE_TOLERANCE, FIXTURE + " prompt " + i + ": logits predicting position "
                            + position + " differ by " + diff);
                    assertEquals(greedy[position], Fixtures.argmax(logits), FIXTURE + " prompt " + i + ", position " + position);
                    if (position + 1 < greedy.length) logits = runner.append(greedy[position]);
                }
                System.out.printf("CUDA fp8 %s prompt %d: %d greedy tokens identical, max |decode logit - reference| = "
                        + "%.2e%n", FIXTURE, i, greedy.length - prompt.length, worst);

                var generator = new SequenceRunner(model, cache, blocks(next, n));
                next += n;
                int[] generated = generator.generateGreedy(prompt, greedy.length - prompt.length, token -> false);
                assertArrayEquals(Arrays.copyOfRange(greedy, prompt.length, greedy.length), generated);
            }
        }
    }

    /** The checkpoint's FP8 layers stay one byte per weight on the device (bf16 would be about 1.7 times the file). */
    @Test
    void theFp8CheckpointStaysFp8OnTheDevice() throws IOException {
        try (Checkpoint checkpoint = new SafetensorsCheckpointLoader().open(Fixtures.folder(FIXTURE));
             CausalLanguageModel model = onGpu(FIXTURE)) {
            long file = checkpoint.dataBytes();
            System.out.printf("CUDA fp8 %s: weights held %d bytes for %d bytes of tensors in the file (%.3f)%n", FIXTURE,
                    model.weightBytes(), file, (double) model.weightBytes() / file);
            assertTrue(model.weightBytes() < 1.2 * file, model.weightBytes() + " bytes held for a file of " + file);
        }
    }

    /**
     * The same engine-shaped batches on CUDA and on the CPU, both with their {@code fp8} quantizer: the FP8 fixture read
     * as stored, and the bf16 {@code deepseek-v3-tiny} quantized on load (the same codes and scales on both backends).
     */
    @ParameterizedTest
    @ValueSource(strings = {FIXTURE, "deepseek-v3-tiny"})
    void theSameBatchesGiveTheCpuFp8ModelsLogits(String fixture) {
        try (CausalLanguageModel g = onGpu(fixture);
             CausalLanguageModel c = onCpu(fixture);
             KvCache gc = g.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE);
             KvCache cc = c.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            int[] first = Fixtures.ints(fixture, "input_ids_0");
            int[] greedy = Fixtures.ints(fixture, "greedy_ids_1");
            int cached = Fixtures.ints(fixture, "input_ids_1").length;
            int[] decoding = blocks(0, (cached + 2 + BLOCK_SIZE - 1) / BLOCK_SIZE);
            int[] verifying = blocks(decoding.length, (cached + 4 + BLOCK_SIZE - 1) / BLOCK_SIZE);
            int[] chunkBlocks = blocks(decoding.length + verifying.length, (first.length + BLOCK_SIZE - 1) / BLOCK_SIZE);
            int chunk = Math.min(20, first.length);
            ForwardBatch[] steps = {
                    // Two prompts prefilled together, every logit wanted: the dequantizing path.
                    new Fixtures.Batch().addEveryLogit(decoding, 0, Arrays.copyOf(greedy, cached))
                            .addEveryLogit(verifying, 0, Arrays.copyOf(greedy, cached)).build(),
                    // One decode token: the one-token GEMV.
                    new Fixtures.Batch().add(decoding, cached, new int[] {greedy[cached]}).build(),
                    // A decode token and a verification of four: the five-token GEMV.
                    new Fixtures.Batch().add(decoding, cached + 1, new int[] {greedy[cached + 1]})
                            .addEveryLogit(verifying, cached, Arrays.copyOfRange(greedy, cached, cached + 4)).build(),
                    // A chunk of a third prompt, then its rest.
                    new Fixtures.Batch().add(chunkBlocks, 0, Arrays.copyOf(first, chunk)).build(),
                    new Fixtures.Batch().addEveryLogit(chunkBlocks, chunk, Arrays.copyOfRange(first, chunk, first.length))
                            .build()};
            for (int s = 0; s < steps.length; s++) {
                float[] onDevice = gpu.read(g.forward(steps[s], gc).logits());
                float[] onHost = cpu.read(c.forward(steps[s], cc).logits());
                double diff = maxAbsDiff(onDevice, onHost);
                double relative = diff / Math.max(1, maxAbs(onHost));
                System.out.printf("fp8 %s step %d (%d tokens): CUDA vs CPU max |diff| = %.2e, relative %.2e%n", fixture,
                        s, steps[s].numTokens(), diff, relative);
                assertTrue(relative < CPU_RELATIVE_TOLERANCE, fixture + " step " + s + ": CUDA and CPU logits differ by "
                        + diff + " (relative " + relative + ")");
            }
        }
    }
}
