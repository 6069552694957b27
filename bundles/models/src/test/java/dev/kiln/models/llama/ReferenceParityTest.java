package dev.kiln.models.llama;

import static dev.kiln.models.testing.Harness.BLOCK_SIZE;
import static dev.kiln.models.testing.Harness.maxAbsDiff;
import static dev.kiln.models.testing.Harness.rows;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardResult;
import dev.kiln.models.runner.SequenceRunner;
import dev.kiln.models.testing.Batches;
import dev.kiln.models.testing.BlockPool;
import dev.kiln.models.testing.Harness;
import dev.kiln.models.testing.Reference;
import java.util.Arrays;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The Llama-family forward against the fixtures' float64 references (Hugging Face transformers): every position
 * of a prefill, greedy decoding through the paged cache, and the batch shapes an engine issues (chunked prefill,
 * several sequences in one forward, multi-token verification). Block tables are scrambled, never contiguous.
 */
class ReferenceParityTest {
    /** The fixtures README's bound for float32 engines. */
    private static final double REFERENCE_TOLERANCE = 1e-3;
    /**
     * Two ways of computing the same logits in float32 (one-shot or chunked, alone or batched) may differ only by
     * summation order inside the kernels.
     */
    private static final double SAME_COMPUTATION_TOLERANCE = 1e-5;
    private static final int MAX_BATCH_TOKENS = 1024;
    private static final int NUM_BLOCKS = 160;

    private final ComputeBackend backend = Harness.backend();

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny", "qwen2-long"})
    void prefillMatchesTheReferenceAtEveryPosition(String fixture) {
        Reference reference = Reference.of(Harness.fixture(fixture));
        try (CausalLanguageModel model = Harness.build(fixture, MAX_BATCH_TOKENS);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            BlockPool pool = new BlockPool(NUM_BLOCKS, 1);
            for (int i = 0; i < 2; i++) {
                int[] prompt = reference.prompt(i);
                var batch = new Batches(BLOCK_SIZE).addEveryLogit(pool.forTokens(prompt.length, BLOCK_SIZE), 0, prompt)
                        .build(true);
                ForwardResult result = model.forward(batch, cache);

                float[] logits = backend.read(result.logits());
                double logitDiff = maxAbsDiff(logits, reference.logits(i));
                System.out.printf("%s prompt %d (%d tokens): max |logit - reference| = %.2e%n", fixture, i,
                        prompt.length, logitDiff);
                assertTrue(logitDiff < REFERENCE_TOLERANCE, fixture + " prompt " + i + ": logits differ by " + logitDiff);

                float[] expectedHidden = reference.lastHidden(i);
                if (expectedHidden != null) {
                    double hiddenDiff = maxAbsDiff(backend.read(result.hiddenStates()), expectedHidden);
                    System.out.printf("%s prompt %d: max |last hidden - reference| = %.2e%n", fixture, i, hiddenDiff);
                    assertTrue(hiddenDiff < REFERENCE_TOLERANCE, fixture + " prompt " + i + ": hidden states differ by "
                            + hiddenDiff);
                }
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny", "qwen2-long"})
    void greedyDecodingThroughTheCacheReproducesTheReference(String fixture) {
        Reference reference = Reference.of(Harness.fixture(fixture));
        try (CausalLanguageModel model = Harness.build(fixture, MAX_BATCH_TOKENS);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            BlockPool pool = new BlockPool(NUM_BLOCKS, 2);
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
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny", "qwen2-long"})
    void chunkedPrefillEqualsOneShot(String fixture) {
        Reference reference = Reference.of(Harness.fixture(fixture));
        try (CausalLanguageModel model = Harness.build(fixture, MAX_BATCH_TOKENS);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            BlockPool pool = new BlockPool(NUM_BLOCKS, 3);
            int vocab = model.vocabSize();
            int[] prompt = reference.prompt(0);
            float[] oneShot = flatten(new SequenceRunner(model, cache, pool.forTokens(prompt.length, BLOCK_SIZE))
                    .score(prompt));
            for (int chunk : new int[] {7, 64}) {
                int[] blocks = pool.forTokens(prompt.length, BLOCK_SIZE);
                float[] chunked = flatten(new SequenceRunner(model, cache, blocks, chunk).score(prompt));
                double diff = maxAbsDiff(chunked, oneShot);
                System.out.printf("%s: chunks of %d vs one shot: max |diff| = %.2e%n", fixture, chunk, diff);
                assertTrue(diff < SAME_COMPUTATION_TOLERANCE, "chunks of " + chunk + " differ by " + diff);
                assertTrue(maxAbsDiff(chunked, reference.logits(0)) < REFERENCE_TOLERANCE);

                // Only the last chunk's last row is projected when only the next token's logits are wanted.
                float[] last = new SequenceRunner(model, cache, blocks, chunk).append(prompt);
                assertTrue(maxAbsDiff(last, rows(oneShot, vocab, prompt.length - 1, prompt.length))
                        < SAME_COMPUTATION_TOLERANCE);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny", "qwen2-long"})
    void bothPromptsInOneForwardEqualEachAlone(String fixture) {
        Reference reference = Reference.of(Harness.fixture(fixture));
        try (CausalLanguageModel model = Harness.build(fixture, MAX_BATCH_TOKENS);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            BlockPool pool = new BlockPool(NUM_BLOCKS, 4);
            int vocab = model.vocabSize();
            int[] first = reference.prompt(0);
            int[] second = reference.prompt(1);

            var together = new Batches(BLOCK_SIZE)
                    .addEveryLogit(pool.forTokens(first.length, BLOCK_SIZE), 0, first)
                    .addEveryLogit(pool.forTokens(second.length, BLOCK_SIZE), 0, second)
                    .build(false);
            float[] batched = backend.read(model.forward(together, cache).logits());
            assertEquals((first.length + second.length) * vocab, batched.length);
            float[] batchedFirst = rows(batched, vocab, 0, first.length);
            float[] batchedSecond = rows(batched, vocab, first.length, first.length + second.length);

            float[] aloneFirst = flatten(new SequenceRunner(model, cache, pool.forTokens(first.length, BLOCK_SIZE))
                    .score(first));
            float[] aloneSecond = flatten(new SequenceRunner(model, cache, pool.forTokens(second.length, BLOCK_SIZE))
                    .score(second));
            double diff = Math.max(maxAbsDiff(batchedFirst, aloneFirst), maxAbsDiff(batchedSecond, aloneSecond));
            System.out.printf("%s: both prompts batched vs alone: max |diff| = %.2e%n", fixture, diff);
            assertTrue(diff < SAME_COMPUTATION_TOLERANCE, "batched logits differ from single ones by " + diff);
            assertTrue(maxAbsDiff(batchedFirst, reference.logits(0)) < REFERENCE_TOLERANCE);
            assertTrue(maxAbsDiff(batchedSecond, reference.logits(1)) < REFERENCE_TOLERANCE);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny", "qwen2-long"})
    void verifyingSeveralTokensInOneStepEqualsDecodingThemOneByOne(String fixture) {
        Reference reference = Reference.of(Harness.fixture(fixture));
        try (CausalLanguageModel model = Harness.build(fixture, MAX_BATCH_TOKENS);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            BlockPool pool = new BlockPool(NUM_BLOCKS, 5);
            int vocab = model.vocabSize();
            int[] prompt = reference.prompt(1);
            int[] greedy = reference.greedyIds(1);
            int[] draft = Arrays.copyOfRange(greedy, prompt.length, prompt.length + 5);

            int[] blocks = pool.forTokens(prompt.length + draft.length, BLOCK_SIZE);
            new SequenceRunner(model, cache, blocks).append(prompt);
            var verification = new Batches(BLOCK_SIZE).addEveryLogit(blocks, prompt.length, draft).build(false);
            float[] verified = backend.read(model.forward(verification, cache).logits());

            var oneByOne = new SequenceRunner(model, cache, pool.forTokens(prompt.length + draft.length, BLOCK_SIZE));
            oneByOne.append(prompt);
            float[] decoded = new float[draft.length * vocab];
            for (int j = 0; j < draft.length; j++) {
                System.arraycopy(oneByOne.append(draft[j]), 0, decoded, j * vocab, vocab);
            }
            double diff = maxAbsDiff(verified, decoded);
            System.out.printf("%s: verification of %d tokens vs one by one: max |diff| = %.2e%n", fixture, draft.length, diff);
            assertTrue(diff < SAME_COMPUTATION_TOLERANCE, "verification differs from decoding by " + diff);
            float[] expected = rows(reference.greedyLogits(1), vocab, prompt.length, prompt.length + draft.length);
            assertTrue(maxAbsDiff(verified, expected) < REFERENCE_TOLERANCE);
        }
    }

    /** One forward mixing a prefill chunk, a decode token and a verification, as an engine step does. */
    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny", "qwen2-long"})
    void aMixedBatchMatchesTheReferenceForEverySequence(String fixture) {
        Reference reference = Reference.of(Harness.fixture(fixture));
        try (CausalLanguageModel model = Harness.build(fixture, MAX_BATCH_TOKENS);
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
                    .build(true);
            ForwardResult result = model.forward(step, cache);
            float[] logits = backend.read(result.logits());
            assertEquals(6 * vocab, logits.length);
            assertEquals(6 * model.hiddenSize(), backend.read(result.hiddenStates()).length);

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
    @ValueSource(strings = {"qwen2-tiny"})
    void aChunkWithoutLogitRowsFillsTheCacheAndProjectsNothing(String fixture) {
        Reference reference = Reference.of(Harness.fixture(fixture));
        try (CausalLanguageModel model = Harness.build(fixture, MAX_BATCH_TOKENS);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            int vocab = model.vocabSize();
            int[] prompt = reference.prompt(0);
            int[] blocks = new BlockPool(NUM_BLOCKS, 7).forTokens(prompt.length, BLOCK_SIZE);
            int split = prompt.length - 3;
            var silent = new Batches(BLOCK_SIZE).add(blocks, 0, Arrays.copyOf(prompt, split)).build(true);
            var noRows = new dev.kiln.api.model.ForwardBatch(silent.tokens(), silent.positions(), silent.attention(),
                    new int[0], true);
            ForwardResult result = model.forward(noRows, cache);
            assertEquals(0, result.logits().rowCount());
            assertEquals(0, result.hiddenStates().rowCount());

            var rest = new Batches(BLOCK_SIZE).add(blocks, split, Arrays.copyOfRange(prompt, split, prompt.length))
                    .build(false);
            ForwardResult last = model.forward(rest, cache);
            assertNull(last.hiddenStates());
            assertTrue(maxAbsDiff(backend.read(last.logits()),
                    rows(reference.logits(0), vocab, prompt.length - 1, prompt.length)) < REFERENCE_TOLERANCE);
        }
    }

    private static float[] flatten(float[][] rows) {
        int width = rows[0].length;
        float[] out = new float[rows.length * width];
        for (int r = 0; r < rows.length; r++) System.arraycopy(rows[r], 0, out, r * width, width);
        return out;
    }
}
