package dev.kiln.engine;

import static dev.kiln.engine.ConcurrentGreedyTest.KV_MEMORY;
import static dev.kiln.engine.ConcurrentGreedyTest.greedy;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.engine.TokenEvent;
import dev.kiln.engine.testing.Collector;
import dev.kiln.engine.testing.Fixtures;
import dev.kiln.engine.testing.TestEngine;
import org.junit.jupiter.api.Test;

/** A listener that throws fails its own request, and only that one; stopping the engine fails what is in flight. */
class ListenerFailureTest {
    private static final String FIXTURE = "llama3-tiny";

    @Test
    void aThrowingListenerFailsOnlyItsRequest() {
        int[][] prompts = {Fixtures.prompt(FIXTURE, 0), Fixtures.prompt(FIXTURE, 1)};
        int[][] expected = {Fixtures.greedyContinuation(FIXTURE, 0), Fixtures.greedyContinuation(FIXTURE, 1)};
        try (TestEngine engine = TestEngine.start(FIXTURE, EngineSettings.defaults().withKvCacheMemory(KV_MEMORY))) {
            Collector before = engine.submit(greedy("before", prompts[0], expected[0].length));
            Collector faulty = new Collector() {
                @Override
                public synchronized void onTokens(TokenEvent event) {
                    super.onTokens(event);
                    if (tokens().length == 3) throw new IllegalStateException("listener bug");
                }
            };
            engine.submit(greedy("faulty", prompts[1], expected[1].length), faulty);
            Collector after = engine.submit(greedy("after", prompts[1], expected[1].length));

            faulty.await();
            assertInstanceOf(IllegalStateException.class, faulty.error());
            assertEquals(3, faulty.tokens().length, "no event after the failure");
            assertArrayEquals(expected[0], before.await().tokens());
            assertArrayEquals(expected[1], after.await().tokens());
            assertNull(before.error());
            assertNull(after.error());
            engine.awaitIdle();
            assertEquals(0, engine.core().stats().kvBlocksUsed());
            assertEquals(3, engine.core().stats().requestsFinished());
        }
    }

    @Test
    void closingTheEngineFailsRequestsInFlightWithAClearError() {
        TestEngine engine = TestEngine.start(FIXTURE, EngineSettings.defaults().withKvCacheMemory(KV_MEMORY));
        Collector running = engine.submit(greedy("long", Fixtures.prompt(FIXTURE, 1), 3000));
        engine.close();
        running.await();
        assertInstanceOf(IllegalStateException.class, running.error());
        assertTrue(running.error().getMessage().contains("stopped"), running.error().getMessage());
        assertTrue(org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                () -> engine.core().submit(greedy("late", new int[] {1}, 1), new Collector())).getMessage().contains("stopped"));
    }
}
