package dev.kiln.engine;

import static dev.kiln.engine.ConcurrentGreedyTest.greedy;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.engine.testing.Collector;
import dev.kiln.engine.testing.Fixtures;
import dev.kiln.engine.testing.TestEngine;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * With a KV cache far smaller than the batch needs, sequences are preempted and recomputed, and every request
 * still completes with exactly its reference tokens.
 */
class PreemptionTest {
    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny"})
    void aTinyCacheCompletesEveryRequestCorrectly(String fixture) {
        int[][] prompts = {Fixtures.prompt(fixture, 0), Fixtures.prompt(fixture, 1)};
        int[][] expected = {Fixtures.greedyContinuation(fixture, 0), Fixtures.greedyContinuation(fixture, 1)};
        int n = 12;
        // Each request needs 2-4 blocks of 16 tokens; 8 blocks hold at most a few of the 12 at once.
        var settings = EngineSettings.defaults().withKvCacheMemory(8L * blockBytes(fixture)).withMaxNumSeqs(n)
                .withMaxNumBatchedTokens(64);
        try (TestEngine engine = TestEngine.start(fixture, settings)) {
            assertEquals(8, engine.core().kvBlocks());
            Collector[] collectors = new Collector[n];
            for (int i = 0; i < n; i++) {
                collectors[i] = engine.submit(greedy("r" + i, prompts[i % 2], expected[i % 2].length));
            }
            for (int i = 0; i < n; i++) {
                Collector c = collectors[i].await();
                assertNull(c.error());
                assertArrayEquals(expected[i % 2], c.tokens(), fixture + " request " + i);
            }
            engine.awaitIdle();
            System.out.printf("%s: %d preemptions, %s%n", fixture, engine.core().preemptions(), engine.core().stats());
            assertTrue(engine.core().preemptions() > 0, "the cache was meant to run out");
            assertEquals(0, engine.core().stats().kvBlocksUsed());
        }
    }

    /** Bytes of one KV cache block of the fixture's model (default block size). */
    static long blockBytes(String fixture) {
        try (var model = Fixtures.build(fixture, 16)) {
            return model.kvCacheSpec().bytesPerToken() * EngineSettings.DEFAULT_BLOCK_SIZE;
        }
    }
}
