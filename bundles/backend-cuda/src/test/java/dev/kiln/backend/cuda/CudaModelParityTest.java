package dev.kiln.backend.cuda;

import static dev.kiln.backend.cuda.testing.Data.maxAbsDiff;
import static dev.kiln.backend.cuda.testing.Fixtures.BLOCK_SIZE;
import static dev.kiln.backend.cuda.testing.Fixtures.blocks;
import static dev.kiln.backend.cuda.testing.Fixtures.rows;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.attention.paged.PagedAttention;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.backend.cuda.testing.Fixtures;
import dev.kiln.backend.cuda.testing.Gpu;
import dev.kiln.models.runner.SequenceRunner;
import java.util.Arrays;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The Llama-family and DeepSeek (MLA, MoE) fixtures run on the device: logits at every prompt position and the
 * greedy continuation against the float64 references, and the same engine-shaped batches on CUDA and on the CPU
 * backend.
 */
class CudaModelParityTest {
    /** The fixtures README's bound for float32 engines. */
    private static final double REFERENCE_TOLERANCE = 1e-3;
    /**
     * CUDA against the CPU backend on the same batch: both compute in f32 from the same bf16 weights, differing
     * only in summation order and in the prefill GEMM's bf16 split of the activations (16 significant bits).
     */
    private static final double CPU_TOLERANCE = 2e-4;
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

    private static CausalLanguageModel onGpu(String fixture) {
        return Fixtures.build(fixture, gpu, Gpu.attention(), MAX_BATCH_TOKENS);
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny", "qwen2-long", "deepseek-v2-lite-tiny", "deepseek-v3-tiny"})
    void prefillLogitsMatchTheReferenceAtEveryPosition(String fixture) {
        try (CausalLanguageModel model = onGpu(fixture); KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            int next = 0;
            for (int i = 0; i < 2; i++) {
                int[] prompt = Fixtures.ints(fixture, "input_ids_" + i);
                int n = (prompt.length + BLOCK_SIZE - 1) / BLOCK_SIZE;
                ForwardBatch batch = new Fixtures.Batch().addEveryLogit(blocks(next, n), 0, prompt).build();
                next += n;
                float[] logits = gpu.read(model.forward(batch, cache).logits());
                double diff = maxAbsDiff(logits, Fixtures.floats(fixture, "logits_" + i));
                System.out.printf("CUDA %s prompt %d (%d tokens): max |logit - reference| = %.2e%n", fixture, i,
                        prompt.length, diff);
                assertTrue(diff < REFERENCE_TOLERANCE, fixture + " prompt " + i + ": logits differ by " + diff);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny", "qwen2-long", "deepseek-v2-lite-tiny", "deepseek-v3-tiny"})
    void greedyDecodingReproducesTheReferenceTokensAndLogits(String fixture) {
        try (CausalLanguageModel model = onGpu(fixture); KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            int vocab = model.vocabSize();
            int next = 0;
            for (int i = 0; i < 2; i++) {
                int[] prompt = Fixtures.ints(fixture, "input_ids_" + i);
                int[] greedy = Fixtures.ints(fixture, "greedy_ids_" + i);
                float[] greedyLogits = Fixtures.floats(fixture, "greedy_logits_" + i);
                int n = (greedy.length + BLOCK_SIZE - 1) / BLOCK_SIZE;
                var runner = new SequenceRunner(model, cache, blocks(next, n));
                next += n;
                double worst = 0;
                float[] logits = runner.append(prompt);
                for (int position = prompt.length; position < greedy.length; position++) {
                    double diff = maxAbsDiff(logits, rows(greedyLogits, vocab, position - 1, position));
                    worst = Math.max(worst, diff);
                    assertTrue(diff < REFERENCE_TOLERANCE, fixture + " prompt " + i + ": logits predicting position "
                            + position + " differ by " + diff);
                    assertEquals(greedy[position], Fixtures.argmax(logits), fixture + " prompt " + i + ", position " + position);
                    if (position + 1 < greedy.length) logits = runner.append(greedy[position]);
                }
                System.out.printf("CUDA %s prompt %d: %d greedy tokens identical, max |decode logit - reference| = %.2e%n",
                        fixture, i, greedy.length - prompt.length, worst);

                var generator = new SequenceRunner(model, cache, blocks(next, n));
                next += n;
                int[] generated = generator.generateGreedy(prompt, greedy.length - prompt.length, token -> false);
                assertArrayEquals(Arrays.copyOfRange(greedy, prompt.length, greedy.length), generated);
            }
        }
    }

    /** One engine step mixing a prefill chunk, a decode token and a verification, on both backends. */
    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny", "qwen2-long", "deepseek-v2-lite-tiny", "deepseek-v3-tiny"})
    void theSameBatchesGiveTheSameLogitsOnCudaAndOnTheCpu(String fixture) {
        try (CausalLanguageModel g = onGpu(fixture);
             CausalLanguageModel c = Fixtures.build(fixture, cpu, new PagedAttention(), MAX_BATCH_TOKENS);
             KvCache gc = g.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE);
             KvCache cc = c.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            int[] first = Fixtures.ints(fixture, "input_ids_0");
            int[] greedy = Fixtures.ints(fixture, "greedy_ids_1");
            int cached = Fixtures.ints(fixture, "input_ids_1").length;
            int[] decoding = blocks(0, (cached + 1 + BLOCK_SIZE - 1) / BLOCK_SIZE);
            int[] verifying = blocks(decoding.length, (cached + 4 + BLOCK_SIZE - 1) / BLOCK_SIZE);
            int[] chunkBlocks = blocks(decoding.length + verifying.length, (first.length + BLOCK_SIZE - 1) / BLOCK_SIZE);
            int chunk = Math.min(20, first.length);

            ForwardBatch[] steps = {
                    // Two prompts prefilled together, every logit wanted.
                    new Fixtures.Batch().addEveryLogit(decoding, 0, Arrays.copyOf(greedy, cached))
                            .addEveryLogit(verifying, 0, Arrays.copyOf(greedy, cached)).build(),
                    // A prefill chunk, a decode token and a verification of four in one step.
                    new Fixtures.Batch().add(chunkBlocks, 0, Arrays.copyOf(first, chunk))
                            .add(decoding, cached, new int[] {greedy[cached]})
                            .addEveryLogit(verifying, cached, Arrays.copyOfRange(greedy, cached, cached + 4)).build(),
                    // The rest of the chunked prompt.
                    new Fixtures.Batch().addEveryLogit(chunkBlocks, chunk, Arrays.copyOfRange(first, chunk, first.length))
                            .build()};
            for (int s = 0; s < steps.length; s++) {
                float[] onGpu = gpu.read(g.forward(steps[s], gc).logits());
                float[] onCpu = cpu.read(c.forward(steps[s], cc).logits());
                double diff = maxAbsDiff(onGpu, onCpu);
                System.out.printf("CUDA vs CPU %s step %d (%d tokens): max |diff| = %.2e%n", fixture, s,
                        steps[s].numTokens(), diff);
                assertTrue(diff < CPU_TOLERANCE, fixture + " step " + s + ": CUDA and CPU logits differ by " + diff);
            }
        }
    }
}
