package dev.kiln.engine;

import static dev.kiln.engine.ConcurrentGreedyTest.KV_MEMORY;
import static dev.kiln.engine.ConcurrentGreedyTest.greedy;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.engine.TokenEvent;
import dev.kiln.engine.testing.Collector;
import dev.kiln.engine.testing.Fixtures;
import dev.kiln.engine.testing.TestEngine;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** Long prompts are prefilled in chunks of the step budget, with the same result, without stalling decodes. */
class ChunkedPrefillTest {
    private static final String FIXTURE = "qwen2-long";

    @Test
    void aPromptPrefilledInChunksOf32EqualsTheUnchunkedResult() {
        int[] prompt = Fixtures.prompt(FIXTURE, 0); // 600 tokens
        int[] expected = Fixtures.greedyContinuation(FIXTURE, 0);
        int[] unchunked;
        try (TestEngine engine = TestEngine.start(FIXTURE, EngineSettings.defaults().withKvCacheMemory(KV_MEMORY)
                .withMaxNumBatchedTokens(1024))) {
            unchunked = engine.submit(greedy("whole", prompt, expected.length)).await().tokens();
        }
        try (TestEngine engine = TestEngine.start(FIXTURE, EngineSettings.defaults().withKvCacheMemory(KV_MEMORY)
                .withMaxNumBatchedTokens(32))) {
            int[] chunked = engine.submit(greedy("chunked", prompt, expected.length)).await().tokens();
            assertArrayEquals(expected, unchunked);
            assertArrayEquals(unchunked, chunked);
            engine.awaitIdle();
            assertEquals(prompt.length, engine.core().stats().promptTokens());
        }
    }

    @Test
    void runningDecodesKeepProducingTokensWhileALongPromptIsPrefilled() {
        int[] shortPrompt = Fixtures.prompt(FIXTURE, 1); // 97 tokens
        int[] shortExpected = Fixtures.greedyContinuation(FIXTURE, 1);
        int[] longPrompt = Fixtures.prompt(FIXTURE, 0); // 600 tokens: 20 steps of 32 tokens
        int[] longExpected = Fixtures.greedyContinuation(FIXTURE, 0);
        try (TestEngine engine = TestEngine.start(FIXTURE, EngineSettings.defaults().withKvCacheMemory(KV_MEMORY)
                .withMaxNumBatchedTokens(32))) {
            AtomicInteger shortTokensBeforeLongStarted = new AtomicInteger(-1);
            Collector shortRequest = new Collector();
            Collector longRequest = new Collector() {
                @Override
                public synchronized void onTokens(TokenEvent event) {
                    shortTokensBeforeLongStarted.compareAndSet(-1, shortRequest.tokens().length);
                    super.onTokens(event);
                }
            };
            engine.submit(greedy("short", shortPrompt, shortExpected.length), shortRequest);
            engine.submit(greedy("long", longPrompt, longExpected.length), longRequest);
            assertArrayEquals(shortExpected, shortRequest.await().tokens());
            assertArrayEquals(longExpected, longRequest.await().tokens());
            // The short request decodes one token per step while the long one takes the rest of each step's budget.
            int decodedMeanwhile = shortTokensBeforeLongStarted.get();
            System.out.println("tokens decoded by the short request during the long prefill: " + decodedMeanwhile);
            assertTrue(decodedMeanwhile >= 15, "decodes stalled behind the prefill: " + decodedMeanwhile);
        }
    }
}
