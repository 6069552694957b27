package dev.kiln.engine;

import static dev.kiln.engine.ConcurrentGreedyTest.KV_MEMORY;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.engine.FinishReason;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.api.engine.TokenLogprobs;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.api.sampling.Sampler;
import dev.kiln.api.sampling.SequenceView;
import dev.kiln.engine.testing.Collector;
import dev.kiln.engine.testing.Fixtures;
import dev.kiln.engine.testing.TestEngine;
import dev.kiln.sampler.DefaultSampler;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.random.RandomGenerator;
import org.junit.jupiter.api.Test;

/** Seeded sampling, log-probabilities against the reference logits, and samplers swapped at runtime. */
class SamplingTest {
    private static final String FIXTURE = "qwen2-tiny";
    private static final int VOCAB = 384;
    /** Log-probabilities computed in float32 from logits within 1e-3 of the float64 reference. */
    private static final double LOGPROB_TOLERANCE = 2e-3;

    private final int[] prompt = Fixtures.prompt(FIXTURE, 0);

    private static EngineSettings settings() {
        return EngineSettings.defaults().withKvCacheMemory(KV_MEMORY);
    }

    private static GenerationRequest sampled(String id, int[] prompt, Long seed, int maxTokens) {
        var params = new SamplingParams(1.0, 0.95, 50, 0, 0, 0, 1, seed, 0);
        return new GenerationRequest(id, prompt, params, maxTokens, 0, null, true, -1, null);
    }

    @Test
    void aSeedReproducesTheSameTokensAndAnotherSeedDiffers() {
        try (TestEngine engine = TestEngine.start(FIXTURE, settings())) {
            int[] first = engine.submit(sampled("a", prompt, 42L, 24)).await().tokens();
            // Alongside other requests the seeded one still draws from its own stream.
            Collector noise = engine.submit(sampled("noise", Fixtures.prompt(FIXTURE, 1), null, 24));
            int[] again = engine.submit(sampled("b", prompt, 42L, 24)).await().tokens();
            int[] other = engine.submit(sampled("c", prompt, 43L, 24)).await().tokens();
            noise.await();
            assertEquals(24, first.length);
            assertArrayEquals(first, again);
            assertNotEquals(Arrays.toString(first), Arrays.toString(other));
        }
    }

    @Test
    void logprobsOfGreedyTokensAreTheReferenceLogSoftmax() {
        int[] expected = Fixtures.greedyContinuation(FIXTURE, 0);
        float[] reference = Fixtures.greedyLogits(FIXTURE, 0);
        var params = new SamplingParams(0, 1, 0, 0, 0, 0, 1, null, 3);
        try (TestEngine engine = TestEngine.start(FIXTURE, settings())) {
            Collector c = engine.submit(new GenerationRequest("lp", prompt, params, expected.length, 0, null, true, -1, null))
                    .await();
            assertArrayEquals(expected, c.tokens());
            int step = 0;
            for (TokenEvent event : c.events()) {
                assertEquals(1, event.logprobs().size());
                TokenLogprobs lp = event.logprobs().getFirst();
                int position = prompt.length - 1 + step;
                double[] logSoftmax = logSoftmax(reference, position, 1.0);
                assertEquals(expected[step], lp.token());
                assertEquals(logSoftmax[lp.token()], lp.logprob(), LOGPROB_TOLERANCE, "step " + step);
                assertEquals(3, lp.topTokens().length);
                assertEquals(lp.token(), lp.topTokens()[0], "greedy picks the most likely token");
                for (int k = 0; k < 3; k++) {
                    assertEquals(logSoftmax[lp.topTokens()[k]], lp.topLogprobs()[k], LOGPROB_TOLERANCE);
                    if (k > 0) assertTrue(lp.topLogprobs()[k] <= lp.topLogprobs()[k - 1]);
                }
                step++;
            }
        }
    }

    @Test
    void logprobsApplyTheTemperature() {
        var params = new SamplingParams(0.5, 1, 0, 0, 0, 0, 1, 7L, 2);
        float[] reference = Fixtures.promptLogits(FIXTURE, 0);
        try (TestEngine engine = TestEngine.start(FIXTURE, settings())) {
            Collector c = engine.submit(new GenerationRequest("t", prompt, params, 1, 0, null, true, -1, null)).await();
            TokenLogprobs lp = c.events().getFirst().logprobs().getFirst();
            double[] expected = logSoftmax(reference, prompt.length - 1, 0.5);
            assertEquals(expected[lp.token()], lp.logprob(), LOGPROB_TOLERANCE);
            assertEquals(expected[lp.topTokens()[0]], lp.topLogprobs()[0], LOGPROB_TOLERANCE);
        }
    }

    @Test
    void promptLogprobsScoreEveryPromptTokenAgainstTheReference() {
        float[] reference = Fixtures.promptLogits(FIXTURE, 0);
        var request = new GenerationRequest("score", prompt, SamplingParams.GREEDY, 0, 0, null, false, 2, null);
        // Chunks of 8 tokens: the rows of every chunk are gathered; and a cached copy of the prompt must not be used.
        try (TestEngine engine = TestEngine.start(FIXTURE, settings().withMaxNumBatchedTokens(8))) {
            engine.submit(ConcurrentGreedyTest.greedy("warm", prompt, 1)).await();
            Collector c = engine.submit(request).await();
            assertEquals(FinishReason.LENGTH, c.finish());
            assertEquals(1, c.events().size());
            TokenEvent event = c.events().getFirst();
            assertEquals(0, event.tokens().length);
            assertEquals(0, event.cachedTokens());
            List<TokenLogprobs> scores = event.promptLogprobs();
            assertEquals(prompt.length - 1, scores.size());
            for (int q = 0; q < scores.size(); q++) {
                double[] expected = logSoftmax(reference, q, 1.0);
                TokenLogprobs lp = scores.get(q);
                assertEquals(prompt[q + 1], lp.token());
                assertEquals(expected[prompt[q + 1]], lp.logprob(), LOGPROB_TOLERANCE, "prompt position " + (q + 1));
                assertEquals(2, lp.topTokens().length);
                assertEquals(expected[lp.topTokens()[0]], lp.topLogprobs()[0], LOGPROB_TOLERANCE);
            }
        }
    }

    @Test
    void promptLogprobsComeWithTheFirstTokenWhenGenerating() {
        int[] expected = Fixtures.greedyContinuation(FIXTURE, 0);
        var request = new GenerationRequest("both", prompt, SamplingParams.GREEDY, 3, 0, null, true, 0, null);
        try (TestEngine engine = TestEngine.start(FIXTURE, settings())) {
            Collector c = engine.submit(request).await();
            assertArrayEquals(Arrays.copyOf(expected, 3), c.tokens());
            assertEquals(prompt.length - 1, c.events().get(0).promptLogprobs().size());
            assertEquals(0, c.events().get(0).promptLogprobs().get(0).topTokens().length);
            assertNull(c.events().get(1).promptLogprobs());
        }
    }

    @Test
    void aSamplerSwappedAtRuntimeAppliesFromTheNextStepWithoutFailingRequests() throws Exception {
        var first = new CountingSampler(new DefaultSampler());
        var second = new CountingSampler(new DefaultSampler());
        int[] expected = Fixtures.greedyContinuation(FIXTURE, 0);
        try (TestEngine engine = TestEngine.start(FIXTURE, settings(), first, List.of())) {
            var swapped = new java.util.concurrent.CountDownLatch(1);
            Collector c = new Collector() {
                @Override
                public synchronized void onTokens(TokenEvent event) {
                    super.onTokens(event);
                    if (tokens().length == 4) {
                        engine.core().setSampler(second);
                        swapped.countDown();
                    }
                }
            };
            engine.submit(ConcurrentGreedyTest.greedy("swap", prompt, expected.length), c);
            c.await();
            assertArrayEquals(expected, c.tokens());
            assertEquals(4, first.calls.get());
            assertEquals(expected.length - 4, second.calls.get());

            // Without any sampler, greedy requests are still served and sampling ones are refused.
            engine.core().setSampler(null);
            assertArrayEquals(expected, engine.submit(ConcurrentGreedyTest.greedy("none", prompt, expected.length))
                    .await().tokens());
            assertThrows(IllegalStateException.class, () -> engine.submit(sampled("refused", prompt, 1L, 4)));
        }
    }

    @Test
    void theRepetitionPenaltyChangesGreedyOutputThroughTheBoundProcessors() {
        int[] expected = Fixtures.greedyContinuation(FIXTURE, 0);
        // The reference continuation repeats tokens (114, 149): a strong penalty must avoid those repeats.
        var params = new SamplingParams(0, 1, 0, 0, 0, 0, 100.0, null, 0);
        try (TestEngine engine = TestEngine.start(FIXTURE, settings())) {
            int[] penalised = engine.submit(new GenerationRequest("rep", prompt, params, expected.length, 0, null, true, -1,
                    null)).await().tokens();
            assertNotEquals(Arrays.toString(expected), Arrays.toString(penalised));
            assertEquals(penalised.length, Arrays.stream(penalised).distinct().count(), "no token repeated");
        }
    }

    /** log_softmax(row / T) of row {@code position} of a {@code [*, VOCAB]} matrix, in double. */
    private static double[] logSoftmax(float[] matrix, int position, double temperature) {
        double max = Double.NEGATIVE_INFINITY;
        for (int v = 0; v < VOCAB; v++) max = Math.max(max, matrix[position * VOCAB + v] / temperature);
        double sum = 0;
        for (int v = 0; v < VOCAB; v++) sum += Math.exp(matrix[position * VOCAB + v] / temperature - max);
        double log = Math.log(sum) + max;
        double[] out = new double[VOCAB];
        for (int v = 0; v < VOCAB; v++) out[v] = matrix[position * VOCAB + v] / temperature - log;
        return out;
    }

    /** A sampler that counts its calls. */
    private static final class CountingSampler implements Sampler {
        final Sampler delegate;
        final AtomicInteger calls = new AtomicInteger();

        CountingSampler(Sampler delegate) {
            this.delegate = delegate;
        }

        @Override
        public int sample(float[] logits, SequenceView sequence, RandomGenerator random) {
            calls.incrementAndGet();
            return delegate.sample(logits, sequence, random);
        }

        @Override
        public float[] probabilities(float[] logits, SequenceView sequence) {
            return delegate.probabilities(logits, sequence);
        }
    }
}
