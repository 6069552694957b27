package dev.kiln.engine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.PendingTokens;
import dev.kiln.api.engine.EngineStats;
import dev.kiln.api.engine.FinishReason;
import dev.kiln.api.engine.GenerationHandle;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.api.model.ForwardResult;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.engine.testing.Collector;
import dev.kiln.engine.testing.DelegatingModel;
import dev.kiln.engine.testing.Fixtures;
import dev.kiln.engine.testing.TestEngine;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * On a backend that overlaps steps, the engine queues each step before reading back the tokens of the step ahead
 * (placeholders in the batch stand for them) and only then takes that step's tokens. Outputs must be exactly those
 * of steps read back one at a time: the reference continuations for greedy requests, the same draws for a seeded
 * sampled one, a stop token or a length limit ending a sequence whose next step is already queued, and nothing left
 * in the cache. The backend is the CPU one behind a proxy that claims device choice and overlap; its pending tokens
 * are chosen at once but remember whether the engine waited for them, so the test sees whether a step was really
 * queued ahead of that wait.
 */
class OverlappedStepsTest {
    private static final long KV_MEMORY = 16L << 20;

    /** Forwards whose batch held placeholders for tokens the engine had not yet waited for. */
    private final AtomicInteger queuedAhead = new AtomicInteger();

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny"})
    void greedyRequestsOfEveryLengthGiveTheReferenceContinuation(String fixture) {
        int[][] prompts = {Fixtures.prompt(fixture, 0), Fixtures.prompt(fixture, 1)};
        int[][] expected = {Fixtures.greedyContinuation(fixture, 0), Fixtures.greedyContinuation(fixture, 1)};
        int[] lengths = {1, 2, 3, 5, expected[0].length, expected[1].length, 7, 4};
        try (TestEngine engine = TestEngine.start(choosingOnDevice(fixture, true), settings())) {
            Collector[] collectors = new Collector[lengths.length];
            for (int i = 0; i < lengths.length; i++) {
                int length = Math.min(lengths[i], expected[i % 2].length);
                GenerationRequest request = new GenerationRequest("r" + i, prompts[i % 2], SamplingParams.GREEDY, length,
                        0, null, true, -1, null);
                collectors[i] = engine.submit(request);
            }
            long generated = 0;
            for (int i = 0; i < lengths.length; i++) {
                Collector c = collectors[i].await();
                assertNull(c.error(), () -> c + " failed");
                int length = Math.min(lengths[i], expected[i % 2].length);
                assertArrayEquals(Arrays.copyOf(expected[i % 2], length), c.tokens(), fixture + " request " + i);
                assertEquals(FinishReason.LENGTH, c.finish());
                var events = c.events();
                for (int k = 0; k < events.size(); k++) {
                    assertEquals(k == events.size() - 1, events.get(k).finish() != null, "only the last event finishes");
                }
                generated += length;
            }
            engine.awaitIdle();
            EngineStats stats = engine.core().stats();
            assertEquals(0, stats.kvBlocksUsed(), "blocks left behind");
            assertEquals(generated, stats.generationTokens(), "a dropped row counted as a token");
            assertTrue(queuedAhead.get() > 0, "no step was queued ahead of the tokens it reads");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama3-tiny"})
    void aStopTokenEndsASequenceWhoseNextStepIsAlreadyQueued(String fixture) {
        // llama3-tiny's first greedy continuation reaches token 2, its eos_token_id; the second runs on alongside.
        int[] continuation = Fixtures.greedyContinuation(fixture, 0);
        int eos = ConcurrentGreedyTest.indexOf(continuation, 2);
        assertTrue(eos > 0, "the fixture's continuation contains EOS");
        int[] other = Fixtures.greedyContinuation(fixture, 1);
        try (TestEngine engine = TestEngine.start(choosingOnDevice(fixture, true), settings())) {
            Collector stopped = engine.submit(GenerationRequest.greedy("eos", Fixtures.prompt(fixture, 0), continuation.length));
            Collector running = engine.submit(new GenerationRequest("other", Fixtures.prompt(fixture, 1), SamplingParams.GREEDY,
                    other.length, 0, null, true, -1, null));
            assertArrayEquals(Arrays.copyOf(continuation, eos), stopped.await().tokens());
            assertEquals(FinishReason.STOP, stopped.finish());
            assertEquals(0, stopped.events().getLast().tokens().length, "the stop token is not output");
            assertArrayEquals(other, running.await().tokens());
            // A stop token of the request's own, mid-way through a continuation.
            int stop = other[other.length / 2];
            int at = ConcurrentGreedyTest.indexOf(other, stop);
            Collector own = engine.submit(new GenerationRequest("own", Fixtures.prompt(fixture, 1), SamplingParams.GREEDY,
                    other.length, 0, new int[] {stop}, true, -1, null));
            assertArrayEquals(Arrays.copyOf(other, at), own.await().tokens());
            assertEquals(FinishReason.STOP, own.finish());
            engine.awaitIdle();
            assertEquals(0, engine.core().stats().kvBlocksUsed(), "blocks left behind");
            assertTrue(queuedAhead.get() > 0, "no step was queued ahead of the tokens it reads");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny"})
    void seededSamplingDrawsWhatStepsReadBackOneAtATimeDraw(String fixture) {
        var params = new SamplingParams(0.8, 0.95, 40, 0, 0, 0, 1, 11L, 0);
        int[] prompt = Fixtures.prompt(fixture, 0);
        int[] overlapped;
        int[] oneAtATime;
        try (TestEngine engine = TestEngine.start(choosingOnDevice(fixture, true), settings())) {
            Collector c = engine.submit(new GenerationRequest("s", prompt, params, 24, 0, null, true, -1, null)).await();
            assertNull(c.error());
            overlapped = c.tokens();
            assertTrue(queuedAhead.get() > 0, "no step was queued ahead of the tokens it reads");
        }
        try (TestEngine engine = TestEngine.start(choosingOnDevice(fixture, false), settings())) {
            oneAtATime = engine.submit(new GenerationRequest("s", prompt, params, 24, 0, null, true, -1, null)).await().tokens();
        }
        assertEquals(24, overlapped.length);
        assertArrayEquals(oneAtATime, overlapped);
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny"})
    void requestsThatNeedTheLogitsShareStepsWithOverlappedOnes(String fixture) {
        int[] prompt = Fixtures.prompt(fixture, 0);
        int[] expected = Fixtures.greedyContinuation(fixture, 0);
        try (TestEngine engine = TestEngine.start(choosingOnDevice(fixture, true), settings())) {
            Collector plain = engine.submit(new GenerationRequest("plain", prompt, SamplingParams.GREEDY, expected.length,
                    0, null, true, -1, null));
            var withLogprobs = new SamplingParams(0, 1, 0, 0, 0, 0, 1, null, 2);
            Collector logprobs = engine.submit(new GenerationRequest("lp", prompt, withLogprobs, expected.length, 0, null,
                    true, -1, null));
            assertArrayEquals(expected, plain.await().tokens());
            assertArrayEquals(expected, logprobs.await().tokens());
            for (TokenEvent event : logprobs.events()) {
                if (event.tokens().length > 0) assertNotNull(event.logprobs(), "an event without log-probabilities");
            }
            // Alone again: steps overlap once more, and a cancelled request frees what it held.
            Collector cancelled = new Collector();
            GenerationHandle handle = engine.submit(new GenerationRequest("cancel", prompt, SamplingParams.GREEDY, 1000,
                    0, null, true, -1, null), cancelled);
            while (cancelled.tokens().length < 3 && !cancelled.isDone()) Thread.onSpinWait();
            handle.cancel();
            assertEquals(FinishReason.CANCELLED, cancelled.await().finish());
            int[] got = cancelled.tokens();
            assertArrayEquals(Arrays.copyOf(expected, Math.min(got.length, expected.length)),
                    Arrays.copyOf(got, Math.min(got.length, expected.length)));
            engine.awaitIdle();
            assertEquals(0, engine.core().stats().kvBlocksUsed(), "blocks left behind");
            assertTrue(queuedAhead.get() > 0, "no step was queued ahead of the tokens it reads");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny"})
    void sequencesPreemptedWhileTheirTokenIsPendingRecomputeToTheReference(String fixture) {
        // As PreemptionTest: 8 blocks of 16 tokens for 12 requests of 2-4 blocks each, so the scheduler preempts
        // sequences whose last token is still a placeholder for a token being chosen.
        int[][] prompts = {Fixtures.prompt(fixture, 0), Fixtures.prompt(fixture, 1)};
        int[][] expected = {Fixtures.greedyContinuation(fixture, 0), Fixtures.greedyContinuation(fixture, 1)};
        int n = 12;
        var tight = EngineSettings.defaults().withKvCacheMemory(8 * PreemptionTest.blockBytes(fixture)).withMaxNumSeqs(n)
                .withMaxNumBatchedTokens(64);
        try (TestEngine engine = TestEngine.start(choosingOnDevice(fixture, true), tight)) {
            assertEquals(8, engine.core().kvBlocks());
            Collector[] collectors = new Collector[n];
            for (int i = 0; i < n; i++) {
                collectors[i] = engine.submit(new GenerationRequest("r" + i, prompts[i % 2], SamplingParams.GREEDY,
                        expected[i % 2].length, 0, null, true, -1, null));
            }
            for (int i = 0; i < n; i++) {
                Collector c = collectors[i].await();
                assertNull(c.error(), () -> c + " failed");
                assertArrayEquals(expected[i % 2], c.tokens(), fixture + " request " + i);
            }
            engine.awaitIdle();
            assertTrue(engine.core().preemptions() > 0, "the cache was meant to run out");
            assertEquals(0, engine.core().stats().kvBlocksUsed(), "blocks left behind");
            assertTrue(queuedAhead.get() > 0, "no step was queued ahead of the tokens it reads");
        }
    }

    private static EngineSettings settings() {
        return EngineSettings.defaults().withKvCacheMemory(KV_MEMORY).withMaxNumSeqs(8);
    }

    /** Pending tokens chosen at once on the CPU, remembering whether anyone waited for them. */
    private static final class Watched implements PendingTokens {
        private final int[] chosen;
        private volatile boolean awaited;

        Watched(int[] chosen) {
            this.chosen = chosen;
        }

        @Override
        public int count() {
            return chosen.length;
        }

        @Override
        public int[] await() {
            awaited = true;
            return chosen.clone();
        }
    }

    /**
     * The fixture's model with a backend that chooses tokens "on the device" (drawing as a GPU does, which differs
     * from the host sampler's draws) and overlaps steps or not, counting the forwards queued ahead of the wait for
     * the tokens they read.
     */
    private CausalLanguageModel choosingOnDevice(String fixture, boolean overlap) {
        CausalLanguageModel real = Fixtures.build(fixture, EngineSettings.DEFAULT_MAX_NUM_BATCHED_TOKENS);
        ComputeBackend cpu = real.backend();
        return new DelegatingModel(real, (method, args) -> switch (method.getName()) {
            case "choosesTokensOnDevice" -> true;
            case "overlapsSteps" -> overlap;
            case "argmaxRowsPending" -> new Watched(cpu.argmaxRows((Tensor) args[0]));
            case "sampleRowsPending" -> new Watched(cpu.sampleRows((Tensor) args[0], (float[]) args[1], (double[]) args[2]));
            default -> DelegatingModel.DELEGATE;
        }) {
            @Override
            public ForwardResult forward(ForwardBatch batch, KvCache cache) {
                if (batch.pendingTokens() instanceof Watched w && !w.awaited
                        && Arrays.stream(batch.tokens()).anyMatch(t -> t < 0)) {
                    queuedAhead.incrementAndGet();
                }
                return super.forward(batch, cache);
            }
        };
    }
}
