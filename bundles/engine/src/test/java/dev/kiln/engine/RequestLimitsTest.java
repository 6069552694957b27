package dev.kiln.engine;

import static dev.kiln.engine.ConcurrentGreedyTest.KV_MEMORY;
import static dev.kiln.engine.ConcurrentGreedyTest.greedy;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.engine.EngineOverloadedException;
import dev.kiln.api.engine.GenerationHandle;
import dev.kiln.api.engine.FinishReason;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.engine.testing.Collector;
import dev.kiln.engine.testing.Fixtures;
import dev.kiln.engine.testing.TestEngine;
import java.util.Arrays;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** What ends a sequence (max tokens, context length, stop tokens, min tokens) and what submit refuses. */
class RequestLimitsTest {
    private static final String FIXTURE = "qwen2-tiny";
    private final int[] prompt = Fixtures.prompt(FIXTURE, 0);
    private final int[] expected = Fixtures.greedyContinuation(FIXTURE, 0);

    private static EngineSettings settings() {
        return EngineSettings.defaults().withKvCacheMemory(KV_MEMORY);
    }

    @Test
    void maxTokensEndsWithLength() {
        try (TestEngine engine = TestEngine.start(FIXTURE, settings())) {
            Collector c = engine.submit(greedy("five", prompt, 5)).await();
            assertArrayEquals(Arrays.copyOf(expected, 5), c.tokens());
            assertEquals(FinishReason.LENGTH, c.finish());
        }
    }

    @Test
    void theContextLengthEndsWithLengthAndLongerPromptsAreRefused() {
        try (TestEngine engine = TestEngine.start(FIXTURE, settings().withMaxModelLen(prompt.length + 3))) {
            assertEquals(prompt.length + 3, engine.core().maxModelLen());
            assertEquals(prompt.length + 3, engine.core().model().orElseThrow().contextLength());
            Collector c = engine.submit(greedy("ctx", prompt, 100)).await();
            assertArrayEquals(Arrays.copyOf(expected, 3), c.tokens());
            assertEquals(FinishReason.LENGTH, c.finish());

            int[] tooLong = Arrays.copyOf(prompt, prompt.length + 4);
            assertThrows(IllegalArgumentException.class, () -> engine.submit(greedy("long", tooLong, 1)));
            int[] filling = Arrays.copyOf(prompt, prompt.length + 3);
            assertThrows(IllegalArgumentException.class, () -> engine.submit(greedy("full", filling, 1)));
        }
    }

    @Test
    void theDefaultContextIsTheModelsPositionsCappedByTheCache() {
        try (TestEngine engine = TestEngine.start(FIXTURE, settings().withKvCacheMemory(1 << 20))) {
            // 1 MiB of 768-byte tokens: 85 blocks of 16, i.e. 1360 tokens, below max_position_embeddings 4096.
            assertEquals(85, engine.core().kvBlocks());
            assertEquals(1360, engine.core().maxModelLen());
        }
        try (TestEngine engine = TestEngine.start(FIXTURE, settings())) {
            assertEquals(4096, engine.core().maxModelLen());
        }
        assertThrows(IllegalArgumentException.class,
                () -> TestEngine.start(FIXTURE, settings().withKvCacheMemory(1 << 20).withMaxModelLen(2000)));
        assertThrows(IllegalArgumentException.class, () -> TestEngine.start(FIXTURE, settings().withKvCacheMemory(100)));
    }

    @Test
    void tokensOutsideTheVocabularyAreRefused() {
        try (TestEngine engine = TestEngine.start(FIXTURE, settings())) {
            assertThrows(IllegalArgumentException.class, () -> engine.submit(greedy("bad", new int[] {1, 384}, 1)));
            assertThrows(IllegalArgumentException.class, () -> engine.submit(greedy("neg", new int[] {-1}, 1)));
        }
    }

    @Test
    void aStopTokenEndsTheSequenceWithoutBeingOutput() {
        int stop = expected[4];
        assertEquals(-1, ConcurrentGreedyTest.indexOf(Arrays.copyOf(expected, 4), stop));
        try (TestEngine engine = TestEngine.start(FIXTURE, settings())) {
            var request = new GenerationRequest("stop", prompt, SamplingParams.GREEDY, 20, 0, new int[] {stop}, true, -1, null);
            Collector c = engine.submit(request).await();
            assertArrayEquals(Arrays.copyOf(expected, 4), c.tokens());
            assertEquals(FinishReason.STOP, c.finish());
        }
    }

    @Test
    void minTokensSuppressesStopTokensUntilReached() {
        int stop = expected[1];
        try (TestEngine engine = TestEngine.start(FIXTURE, settings())) {
            var request = new GenerationRequest("min", prompt, SamplingParams.GREEDY, 12, 6, new int[] {stop}, true, -1, null);
            Collector c = engine.submit(request).await();
            int[] tokens = c.tokens();
            assertTrue(tokens.length >= 6, "ended after " + tokens.length + " tokens despite min_tokens 6");
            assertEquals(expected[0], tokens[0]);
            assertTrue(Arrays.stream(tokens).noneMatch(t -> t == stop), "a stop token was output");
            // The second token would have been the stop token: with it masked the model chose another.
            assertTrue(tokens[1] != stop);
        }
    }

    @Test
    void maxTokensZeroComputesOnlyThePrompt() {
        try (TestEngine engine = TestEngine.start(FIXTURE, settings())) {
            Collector c = engine.submit(greedy("prompt-only", prompt, 0)).await();
            assertEquals(0, c.tokens().length);
            assertEquals(FinishReason.LENGTH, c.finish());
            assertEquals(1, c.events().size());
            engine.awaitIdle();
            assertEquals(prompt.length, engine.core().stats().promptTokens());
            assertEquals(0, engine.core().stats().generationTokens());
        }
    }

    /**
     * A queue filled exactly to its limit while the engine moves the requests from its inbox to the scheduler is never
     * refused, and once every request is cancelled the engine reports nothing waiting. The requests the engine moves
     * were counted twice for an instant (refusing a request now and then as overload while the queue had room), and an
     * engine that went idle right after cancelling its waiting requests kept reporting them as waiting, which also
     * counted against the limit, until the next request woke it.
     */
    @Test
    void aQueueFilledToItsLimitWhileTheEngineDrainsItIsNeverRefused() throws InterruptedException {
        int maxWaiting = 1000;
        try (TestEngine engine = TestEngine.start(FIXTURE, settings().withMaxWaiting(maxWaiting).withMaxNumSeqs(1))) {
            for (int round = 0; round < 20; round++) {
                Collector[] collectors = new Collector[maxWaiting];
                GenerationHandle[] handles = new GenerationHandle[maxWaiting];
                for (int i = 0; i < maxWaiting; i++) {
                    collectors[i] = new Collector();
                    handles[i] = engine.submit(greedy("r" + round + "." + i, prompt, 2000), collectors[i]);
                }
                for (GenerationHandle h : handles) h.cancel();
                for (Collector c : collectors) assertNull(c.await().error());
                engine.awaitIdle();
                assertEquals(0, engine.core().stats().waiting());
            }
        }
    }

    @Test
    void aFullWaitingQueueRefusesWithOverloadedAndQueuesNothing() throws InterruptedException {
        int maxWaiting = 5;
        try (TestEngine engine = TestEngine.start(FIXTURE, settings().withMaxWaiting(maxWaiting).withMaxNumSeqs(1))) {
            // Hold the engine thread inside the first request's listener so nothing leaves the queue.
            CountDownLatch inListener = new CountDownLatch(1);
            CountDownLatch release = new CountDownLatch(1);
            Collector blocker = new Collector() {
                @Override
                public synchronized void onTokens(TokenEvent event) {
                    super.onTokens(event);
                    inListener.countDown();
                    try {
                        release.await(30, TimeUnit.SECONDS);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
            };
            engine.submit(greedy("blocker", prompt, 2), blocker);
            assertTrue(inListener.await(30, TimeUnit.SECONDS));
            Collector[] queued = new Collector[maxWaiting];
            for (int i = 0; i < maxWaiting; i++) queued[i] = engine.submit(greedy("q" + i, prompt, 2));
            Collector refused = new Collector();
            assertThrows(EngineOverloadedException.class, () -> engine.submit(greedy("over", prompt, 2), refused));
            assertEquals(maxWaiting, engine.core().stats().waiting());
            release.countDown();

            blocker.await();
            for (Collector c : queued) assertArrayEquals(Arrays.copyOf(expected, 2), c.await().tokens());
            assertFalse(refused.isDone(), "the refused request must never be called");
            assertTrue(refused.events().isEmpty());
            assertNull(refused.error());
        }
    }
}
