package dev.kiln.models.deepseek;

import static dev.kiln.models.testing.Harness.BLOCK_SIZE;
import static dev.kiln.models.testing.Harness.maxAbsDiff;
import static dev.kiln.models.testing.Harness.rows;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardResult;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.models.deepseek.DeepSeekModel.AttentionPath;
import dev.kiln.models.runner.SequenceRunner;
import dev.kiln.models.testing.Batches;
import dev.kiln.models.testing.BlockPool;
import dev.kiln.models.testing.Harness;
import dev.kiln.models.testing.Reference;
import dev.kiln.quant.fp8.Fp8Quantizer;
import java.util.Arrays;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * DeepSeek-V3 (bf16 and FP8 blocks) and V2-Lite against the fixtures' float64 references: logits and final hidden
 * states at every position through both MLA paths, greedy decoding through the latent cache, the batch shapes an
 * engine issues, and the MTP module's logits. Block tables are scrambled, never contiguous.
 */
class DeepSeekParityTest {
    /** The fixtures README's bound for float32 engines. */
    private static final double REFERENCE_TOLERANCE = 1e-3;
    /**
     * Two orders of the same float32 computation (absorbed or expanded MLA, chunked or not, alone or batched):
     * they differ by summation order only, far below the reference bound.
     */
    private static final double SAME_COMPUTATION_TOLERANCE = 5e-5;
    private static final int MAX_BATCH_TOKENS = 256;
    private static final int NUM_BLOCKS = 64;

    private final ComputeBackend backend = Harness.backend();

    /** Builds a fixture's model; the FP8 one with the fp8 quantizer, as a deployment would configure it. */
    static CausalLanguageModel build(String fixture, AttentionPath path) {
        var model = Harness.build(Harness.open(fixture), fixture.endsWith("-fp8") ? new Fp8Quantizer() : null,
                MAX_BATCH_TOKENS);
        ((DeepSeekModel) model).useAttentionPath(path);
        return model;
    }

    @ParameterizedTest
    @CsvSource({
        "deepseek-v3-tiny, ABSORBED", "deepseek-v3-tiny, EXPANDED_PREFILL",
        "deepseek-v3-tiny-fp8, ABSORBED", "deepseek-v3-tiny-fp8, EXPANDED_PREFILL",
        "deepseek-v2-lite-tiny, ABSORBED", "deepseek-v2-lite-tiny, EXPANDED_PREFILL"
    })
    void prefillMatchesTheReferenceAtEveryPosition(String fixture, AttentionPath path) {
        Reference reference = Reference.of(Harness.fixture(fixture));
        try (CausalLanguageModel model = build(fixture, path);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            BlockPool pool = new BlockPool(NUM_BLOCKS, 1);
            for (int i = 0; i < 2; i++) {
                int[] prompt = reference.prompt(i);
                var batch = new Batches(BLOCK_SIZE).addEveryLogit(pool.forTokens(prompt.length, BLOCK_SIZE), 0, prompt)
                        .build(true);
                ForwardResult result = model.forward(batch, cache);
                double logitDiff = maxAbsDiff(backend.read(result.logits()), reference.logits(i));
                double hiddenDiff = maxAbsDiff(backend.read(result.hiddenStates()), reference.lastHidden(i));
                System.out.printf("%s %s prompt %d (%d tokens): max |logit - reference| = %.2e, hidden %.2e%n",
                        fixture, path, i, prompt.length, logitDiff, hiddenDiff);
                assertTrue(logitDiff < REFERENCE_TOLERANCE, fixture + " prompt " + i + ": logits differ by " + logitDiff);
                assertTrue(hiddenDiff < REFERENCE_TOLERANCE, fixture + " prompt " + i + ": hidden differs by " + hiddenDiff);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"deepseek-v3-tiny", "deepseek-v3-tiny-fp8", "deepseek-v2-lite-tiny"})
    void absorbedAndExpandedAttentionAgree(String fixture) {
        Reference reference = Reference.of(Harness.fixture(fixture));
        int[] prompt = reference.prompt(0);
        float[][] logits = new float[2][];
        for (AttentionPath path : AttentionPath.values()) {
            try (CausalLanguageModel model = build(fixture, path);
                 KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
                var batch = new Batches(BLOCK_SIZE).addEveryLogit(new BlockPool(NUM_BLOCKS, 2)
                        .forTokens(prompt.length, BLOCK_SIZE), 0, prompt).build(false);
                logits[path.ordinal()] = backend.read(model.forward(batch, cache).logits());
            }
        }
        double diff = maxAbsDiff(logits[0], logits[1]);
        System.out.printf("%s: absorbed vs expanded MLA over %d tokens: max |diff| = %.2e%n", fixture, prompt.length, diff);
        assertTrue(diff < SAME_COMPUTATION_TOLERANCE, "the two MLA paths differ by " + diff);
    }

    @ParameterizedTest
    @ValueSource(strings = {"deepseek-v3-tiny", "deepseek-v3-tiny-fp8", "deepseek-v2-lite-tiny"})
    void greedyDecodingThroughTheLatentCacheReproducesTheReference(String fixture) {
        Reference reference = Reference.of(Harness.fixture(fixture));
        try (CausalLanguageModel model = build(fixture, AttentionPath.EXPANDED_PREFILL);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            BlockPool pool = new BlockPool(NUM_BLOCKS, 3);
            int vocab = model.vocabSize();
            for (int i = 0; i < 2; i++) {
                int[] prompt = reference.prompt(i);
                int[] greedy = reference.greedyIds(i);
                float[] greedyLogits = reference.greedyLogits(i);
                var runner = new SequenceRunner(model, cache, pool.forTokens(greedy.length, BLOCK_SIZE));
                double worst = 0;
                float[] logits = runner.append(prompt);
                for (int position = prompt.length; position < greedy.length; position++) {
                    double diff = maxAbsDiff(logits, rows(greedyLogits, vocab, position - 1, position));
                    worst = Math.max(worst, diff);
                    assertTrue(diff < REFERENCE_TOLERANCE, fixture + " prompt " + i + ", logits predicting position "
                            + position + " differ by " + diff);
                    assertEquals(greedy[position], SequenceRunner.argmax(logits),
                            fixture + " prompt " + i + ": greedy token at position " + position);
                    if (position + 1 < greedy.length) logits = runner.append(greedy[position]);
                }
                System.out.printf("%s prompt %d: %d greedy tokens identical, max |decode logit - reference| = %.2e%n",
                        fixture, i, greedy.length - prompt.length, worst);

                var generator = new SequenceRunner(model, cache, pool.forTokens(greedy.length, BLOCK_SIZE));
                int[] generated = generator.generateGreedy(prompt, greedy.length - prompt.length, token -> false);
                assertArrayEquals(Arrays.copyOfRange(greedy, prompt.length, greedy.length), generated);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"deepseek-v3-tiny", "deepseek-v3-tiny-fp8", "deepseek-v2-lite-tiny"})
    void chunkedPrefillEqualsOneShot(String fixture) {
        Reference reference = Reference.of(Harness.fixture(fixture));
        try (CausalLanguageModel model = build(fixture, AttentionPath.EXPANDED_PREFILL);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            BlockPool pool = new BlockPool(NUM_BLOCKS, 4);
            int[] prompt = reference.prompt(0);
            float[] oneShot = flatten(new SequenceRunner(model, cache, pool.forTokens(prompt.length, BLOCK_SIZE))
                    .score(prompt));
            for (int chunk : new int[] {1, 7}) {
                float[] chunked = flatten(new SequenceRunner(model, cache, pool.forTokens(prompt.length, BLOCK_SIZE), chunk)
                        .score(prompt));
                double diff = maxAbsDiff(chunked, oneShot);
                System.out.printf("%s: chunks of %d vs one shot: max |diff| = %.2e%n", fixture, chunk, diff);
                assertTrue(diff < SAME_COMPUTATION_TOLERANCE, "chunks of " + chunk + " differ by " + diff);
                assertTrue(maxAbsDiff(chunked, reference.logits(0)) < REFERENCE_TOLERANCE);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"deepseek-v3-tiny", "deepseek-v3-tiny-fp8", "deepseek-v2-lite-tiny"})
    void bothPromptsInOneForwardEqualEachAlone(String fixture) {
        Reference reference = Reference.of(Harness.fixture(fixture));
        try (CausalLanguageModel model = build(fixture, AttentionPath.EXPANDED_PREFILL);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            BlockPool pool = new BlockPool(NUM_BLOCKS, 5);
            int vocab = model.vocabSize();
            int[] first = reference.prompt(0);
            int[] second = reference.prompt(1);
            var together = new Batches(BLOCK_SIZE)
                    .addEveryLogit(pool.forTokens(first.length, BLOCK_SIZE), 0, first)
                    .addEveryLogit(pool.forTokens(second.length, BLOCK_SIZE), 0, second)
                    .build(false);
            float[] batched = backend.read(model.forward(together, cache).logits());
            float[] batchedFirst = rows(batched, vocab, 0, first.length);
            float[] batchedSecond = rows(batched, vocab, first.length, first.length + second.length);
            float[] aloneFirst = flatten(new SequenceRunner(model, cache, pool.forTokens(first.length, BLOCK_SIZE))
                    .score(first));
            float[] aloneSecond = flatten(new SequenceRunner(model, cache, pool.forTokens(second.length, BLOCK_SIZE))
                    .score(second));
            double diff = Math.max(maxAbsDiff(batchedFirst, aloneFirst), maxAbsDiff(batchedSecond, aloneSecond));
            System.out.printf("%s: both prompts batched vs alone: max |diff| = %.2e%n", fixture, diff);
            assertTrue(diff < SAME_COMPUTATION_TOLERANCE, "batched logits differ from single ones by " + diff);
            assertTrue(maxAbsDiff(batchedSecond, reference.logits(1)) < REFERENCE_TOLERANCE);
        }
    }

    /** One forward mixing a prefill chunk, a decode token and a verification, as an engine step does. */
    @ParameterizedTest
    @ValueSource(strings = {"deepseek-v3-tiny", "deepseek-v2-lite-tiny"})
    void aMixedBatchMatchesTheReferenceForEverySequence(String fixture) {
        Reference reference = Reference.of(Harness.fixture(fixture));
        try (CausalLanguageModel model = build(fixture, AttentionPath.EXPANDED_PREFILL);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            BlockPool pool = new BlockPool(NUM_BLOCKS, 6);
            int vocab = model.vocabSize();
            int[] first = reference.prompt(0);
            int[] greedy = reference.greedyIds(1);
            int cached = reference.prompt(1).length;
            int[] decoding = pool.forTokens(cached + 1, BLOCK_SIZE);
            int[] verifying = pool.forTokens(cached + 4, BLOCK_SIZE);
            new SequenceRunner(model, cache, decoding).append(Arrays.copyOf(greedy, cached));
            new SequenceRunner(model, cache, verifying).append(Arrays.copyOf(greedy, cached));
            int chunk = Math.min(20, first.length);
            var step = new Batches(BLOCK_SIZE)
                    .add(pool.forTokens(chunk, BLOCK_SIZE), 0, Arrays.copyOf(first, chunk))
                    .add(decoding, cached, new int[] {greedy[cached]})
                    .addEveryLogit(verifying, cached, Arrays.copyOfRange(greedy, cached, cached + 4))
                    .build(false);
            float[] logits = backend.read(model.forward(step, cache).logits());
            float[] greedyLogits = reference.greedyLogits(1);
            assertTrue(maxAbsDiff(rows(logits, vocab, 0, 1), rows(reference.logits(0), vocab, chunk - 1, chunk))
                    < REFERENCE_TOLERANCE, "prefill chunk");
            assertTrue(maxAbsDiff(rows(logits, vocab, 1, 2), rows(greedyLogits, vocab, cached, cached + 1))
                    < REFERENCE_TOLERANCE, "decode token");
            assertTrue(maxAbsDiff(rows(logits, vocab, 2, 6), rows(greedyLogits, vocab, cached, cached + 4))
                    < REFERENCE_TOLERANCE, "verification");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"deepseek-v3-tiny", "deepseek-v3-tiny-fp8"})
    void theMtpModulePredictsTwoAheadLikeTheReference(String fixture) {
        Reference reference = Reference.of(Harness.fixture(fixture));
        try (CausalLanguageModel model = build(fixture, AttentionPath.EXPANDED_PREFILL);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            MtpHead mtp = MtpHead.of(model).orElseThrow();
            assertEquals(model.vocabSize(), mtp.vocabSize());
            BlockPool pool = new BlockPool(NUM_BLOCKS, 7);
            int vocab = model.vocabSize();
            int hidden = model.hiddenSize();
            for (int i = 0; i < 2; i++) {
                int[] prompt = reference.prompt(i);
                int n = prompt.length - 1;
                var target = new Batches(BLOCK_SIZE).addEveryLogit(pool.forTokens(prompt.length, BLOCK_SIZE), 0, prompt)
                        .build(true);
                float[] states = backend.read(model.forward(target, cache).hiddenStates());
                int[] next = Arrays.copyOfRange(prompt, 1, prompt.length);
                Tensor previous = backend.allocate(DType.F32, n, hidden);
                backend.write(Arrays.copyOf(states, n * hidden), previous);

                try (KvCache mtpCache = mtp.allocateKvCache(8, BLOCK_SIZE)) {
                    int[] blocks = new BlockPool(8, 8 + i).forTokens(n, BLOCK_SIZE);
                    var all = new Batches(BLOCK_SIZE).addEveryLogit(blocks, 0, next).build(true);
                    ForwardResult result = mtp.forward(previous, all, mtpCache);
                    float[] logits = backend.read(result.logits());
                    double diff = maxAbsDiff(logits, reference.mtpLogits(i));
                    System.out.printf("%s prompt %d: max |MTP logit - reference| = %.2e over %d positions%n",
                            fixture, i, diff, n);
                    assertTrue(diff < REFERENCE_TOLERANCE, "MTP logits differ by " + diff);
                    assertNotNull(result.hiddenStates());
                    assertEquals(n * hidden, backend.read(result.hiddenStates()).length);

                    // The same predictions one position at a time, through the module's own cache, as drafting does.
                    int[] stepBlocks = new BlockPool(8, 20 + i).forTokens(n, BLOCK_SIZE);
                    try (KvCache stepCache = mtp.allocateKvCache(8, BLOCK_SIZE)) {
                        double worst = 0;
                        for (int j = 0; j < n; j++) {
                            Tensor row = backend.allocate(DType.F32, 1, hidden);
                            backend.write(Arrays.copyOfRange(states, j * hidden, (j + 1) * hidden), row);
                            var one = new Batches(BLOCK_SIZE).add(stepBlocks, j, new int[] {next[j]}).build(false);
                            float[] stepLogits = backend.read(mtp.forward(row, one, stepCache).logits());
                            worst = Math.max(worst, maxAbsDiff(stepLogits, rows(logits, vocab, j, j + 1)));
                        }
                        assertTrue(worst < SAME_COMPUTATION_TOLERANCE, "step-by-step MTP differs by " + worst);
                    }
                }
            }
        }
    }

    private static float[] flatten(float[][] rows) {
        int width = rows[0].length;
        float[] out = new float[rows.length * width];
        for (int r = 0; r < rows.length; r++) System.arraycopy(rows[r], 0, out, r * width, width);
        return out;
    }
}
