package dev.kiln.server.prometheus;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.kiln.server.prometheus.RequestMetrics.Finish;
import org.junit.jupiter.api.Test;

class RequestTimerTest {
    private static final long MS = 1_000_000;

    @Test
    void firstTokenLaterEventsAndTheEndAreTimedFromArrival() {
        RequestMetrics metrics = new RequestMetrics();
        long arrival = 1_000 * MS;
        RequestTimer timer = metrics.start(arrival);
        timer.choices(1);
        timer.tokens(0, 1, arrival + 120 * MS);
        timer.tokens(0, 3, arrival + 150 * MS); // three speculative tokens accepted at once: one observation
        timer.tokens(0, 1, arrival + 170 * MS);
        timer.finished(0, Finish.LENGTH, arrival + 170 * MS);

        assertEquals(1, metrics.timeToFirstToken().count());
        assertEquals(0.120, metrics.timeToFirstToken().sum(), 1e-9);
        assertEquals(2, metrics.interTokenLatency().count());
        assertEquals(0.030 + 0.020, metrics.interTokenLatency().sum(), 1e-9);
        assertEquals(1, metrics.e2eRequestLatency().count());
        assertEquals(0.170, metrics.e2eRequestLatency().sum(), 1e-9);
        assertEquals(1L, metrics.finishedRequests().get("length"));
    }

    @Test
    void aChoiceEndsOnceAndOnlyOpenChoicesAreAborted() {
        RequestMetrics metrics = new RequestMetrics();
        RequestTimer timer = metrics.start(0);
        timer.choices(3);
        timer.tokens(0, 1, 10 * MS);
        timer.finished(0, Finish.STOP, 20 * MS);
        timer.finished(0, Finish.ABORT, 30 * MS); // the engine's CANCELLED after a stop string: already counted
        timer.tokens(0, 1, 40 * MS);              // events after the end are not latencies
        timer.tokens(1, 0, 40 * MS);              // a final event without tokens is no first token
        timer.abortOpen(50 * MS);                 // the client went away: choices 1 and 2 abort

        assertEquals(1L, metrics.finishedRequests().get("stop"));
        assertEquals(2L, metrics.finishedRequests().get("abort"));
        assertEquals(0L, metrics.finishedRequests().get("error"));
        assertEquals(1, metrics.timeToFirstToken().count());
        assertEquals(0, metrics.interTokenLatency().count());
        assertEquals(3, metrics.e2eRequestLatency().count());
    }
}
