package dev.kiln.engine;

import static dev.kiln.engine.ConcurrentGreedyTest.KV_MEMORY;
import static dev.kiln.engine.ConcurrentGreedyTest.greedy;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.engine.EngineStats;
import dev.kiln.api.engine.FinishReason;
import dev.kiln.api.engine.GenerationHandle;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.engine.testing.Collector;
import dev.kiln.engine.testing.Fixtures;
import dev.kiln.engine.testing.TestEngine;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** Cancellation frees a sequence's blocks within a step and ends it with one CANCELLED event. */
class CancellationTest {
    private static final String FIXTURE = "qwen2-tiny";

    @Test
    void cancellingAThousandRequestsInFlightFreesEveryBlock() throws InterruptedException {
        int n = 1000;
        int[][] prompts = {Fixtures.prompt(FIXTURE, 0), Fixtures.prompt(FIXTURE, 1)};
        var settings = EngineSettings.defaults().withKvCacheMemory(KV_MEMORY).withMaxWaiting(n).withMaxNumSeqs(64);
        try (TestEngine engine = TestEngine.start(FIXTURE, settings)) {
            Collector[] collectors = new Collector[n];
            GenerationHandle[] handles = new GenerationHandle[n];
            for (int i = 0; i < n; i++) {
                collectors[i] = new Collector();
                // Long enough that none finishes before it is cancelled.
                handles[i] = engine.submit(greedy("r" + i, prompts[i % 2], 3000), collectors[i]);
            }
            var random = new SplittableRandom(1);
            long deadline = System.nanoTime() + 30_000_000_000L; // let a batch start decoding
            while (engine.core().stats().generationTokens() == 0 && System.nanoTime() < deadline) Thread.sleep(5);
            for (int i = 0; i < n; i++) {
                if (random.nextInt(50) == 0) Thread.sleep(1);
                handles[i].cancel();
            }
            for (int i = 0; i < n; i++) {
                Collector c = collectors[i].await();
                assertNull(c.error());
                assertEquals(FinishReason.CANCELLED, c.finish(), "request " + i);
                TokenEvent last = c.events().getLast();
                assertEquals(0, last.tokens().length);
                assertTrue(handles[i].isDone());
                handles[i].cancel(); // cancelling a finished request does nothing
            }
            engine.awaitIdle();
            EngineStats stats = engine.core().stats();
            System.out.println("after cancelling " + n + " requests: " + stats);
            assertEquals(0, stats.kvBlocksUsed(), "cached free blocks are reported as free");
            assertEquals(0, stats.running());
            assertEquals(0, stats.waiting());
            assertEquals(n, stats.requestsFinished());
            assertTrue(stats.generationTokens() > 0, "some requests were decoding when cancelled");

            // The engine keeps serving afterwards, every block available.
            int[] expected = Fixtures.greedyContinuation(FIXTURE, 0);
            Collector after = engine.submit(greedy("after", prompts[0], expected.length)).await();
            org.junit.jupiter.api.Assertions.assertArrayEquals(expected, after.tokens());
        }
    }
}
