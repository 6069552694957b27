package dev.kiln.engine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.engine.EngineStats;
import dev.kiln.api.engine.FinishReason;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.engine.testing.Collector;
import dev.kiln.engine.testing.Fixtures;
import dev.kiln.engine.testing.TestEngine;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Many greedy requests arriving at random times, batched together with continuous batching, each reproduce the
 * fixture's reference continuation exactly (the fixtures' greedy margins are all above 1e-2, far above float32
 * noise).
 */
class ConcurrentGreedyTest {
    static final long KV_MEMORY = 16L << 20;

    static GenerationRequest greedy(String id, int[] prompt, int maxTokens) {
        return new GenerationRequest(id, prompt, SamplingParams.GREEDY, maxTokens, 0, null, true, -1, null);
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny", "qwen2-long"})
    void concurrentRequestsEachProduceTheReferenceContinuation(String fixture) throws InterruptedException {
        int[][] prompts = {Fixtures.prompt(fixture, 0), Fixtures.prompt(fixture, 1)};
        int[][] expected = {Fixtures.greedyContinuation(fixture, 0), Fixtures.greedyContinuation(fixture, 1)};
        int n = 32;
        var settings = EngineSettings.defaults().withKvCacheMemory(KV_MEMORY).withMaxNumSeqs(12);
        try (TestEngine engine = TestEngine.start(fixture, settings)) {
            Collector[] collectors = new Collector[n];
            var random = new SplittableRandom(fixture.hashCode());
            long[] gaps = random.longs(n, 0, 3_000_000).toArray(); // up to 3 ms between arrivals
            Thread submitter = Thread.ofPlatform().start(() -> {
                for (int i = 0; i < n; i++) {
                    java.util.concurrent.locks.LockSupport.parkNanos(gaps[i]);
                    collectors[i] = engine.submit(greedy("r" + i, prompts[i % 2], expected[i % 2].length));
                }
            });
            submitter.join();
            for (int i = 0; i < n; i++) {
                Collector c = collectors[i].await();
                assertNull(c.error(), () -> "request " + c + " failed");
                assertArrayEquals(expected[i % 2], c.tokens(), fixture + " request " + i);
                assertEquals(FinishReason.LENGTH, c.finish());
                // One token per event, the usage fields on every one, the finish only on the last.
                var events = c.events();
                assertEquals(expected[i % 2].length, events.size());
                for (int k = 0; k < events.size(); k++) {
                    TokenEvent event = events.get(k);
                    assertEquals(1, event.tokens().length);
                    assertEquals(prompts[i % 2].length, event.promptTokens());
                    assertNull(event.logprobs());
                    assertNull(event.promptLogprobs());
                    assertEquals(k == events.size() - 1, event.finish() != null);
                }
            }
            engine.awaitIdle();
            EngineStats stats = engine.core().stats();
            System.out.printf("%s: %d requests, %s, %d preemptions%n", fixture, n, stats, engine.core().preemptions());
            assertEquals(0, stats.kvBlocksUsed());
            assertEquals(n, stats.requestsFinished());
            long generated = (long) (n / 2) * (expected[0].length + expected[1].length);
            assertEquals(generated, stats.generationTokens());
            assertTrue(stats.promptTokens() + stats.prefixCacheHits() >= (long) (n / 2) * (prompts[0].length + prompts[1].length),
                    "every prompt token is computed or found in the cache");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama3-tiny"})
    void theModelsEndOfSequenceTokenStopsWithoutBeingOutput(String fixture) {
        // llama3-tiny's first greedy continuation reaches token 2, its eos_token_id.
        int[] prompt = Fixtures.prompt(fixture, 0);
        int[] continuation = Fixtures.greedyContinuation(fixture, 0);
        int eos = indexOf(continuation, 2);
        assertTrue(eos > 0, "the fixture's continuation contains EOS");
        try (TestEngine engine = TestEngine.start(fixture, EngineSettings.defaults().withKvCacheMemory(KV_MEMORY))) {
            Collector c = engine.submit(GenerationRequest.greedy("eos", prompt, continuation.length)).await();
            assertArrayEquals(java.util.Arrays.copyOf(continuation, eos), c.tokens());
            assertEquals(FinishReason.STOP, c.finish());
            TokenEvent last = c.events().getLast();
            assertEquals(0, last.tokens().length, "the stop token is not output");
        }
    }

    static int indexOf(int[] values, int value) {
        for (int i = 0; i < values.length; i++) {
            if (values[i] == value) return i;
        }
        return -1;
    }
}
