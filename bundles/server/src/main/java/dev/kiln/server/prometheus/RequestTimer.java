package dev.kiln.server.prometheus;

import dev.kiln.server.prometheus.RequestMetrics.Finish;
import java.util.Arrays;

/**
 * Times the engine requests (one per choice) behind one API call: the first token of each choice gives a
 * time-to-first-token observation, every later token event an inter-token latency, and its end an end-to-end
 * latency with the reason. Times are the engine's event times ({@link System#nanoTime()} taken on the engine
 * thread), not when the request thread got round to reading the event. Used by one request thread.
 */
public final class RequestTimer {
    private static final double NANOS_PER_SECOND = 1e9;

    private final RequestMetrics metrics;
    private final long arrival;
    private long[] lastTokenAt = new long[0];
    private boolean[] started = new boolean[0];
    private boolean[] open = new boolean[0];

    RequestTimer(RequestMetrics metrics, long arrivalNanos) {
        this.metrics = metrics;
        this.arrival = arrivalNanos;
    }

    /** The API call runs {@code choices} engine requests, numbered from 0. */
    public void choices(int choices) {
        lastTokenAt = new long[choices];
        started = new boolean[choices];
        open = new boolean[choices];
        Arrays.fill(open, true);
    }

    /** Choice {@code index} produced {@code count} tokens in one event at {@code nanos}. */
    public void tokens(int index, int count, long nanos) {
        if (count <= 0 || !open[index]) return;
        if (started[index]) {
            metrics.interToken(seconds(nanos - lastTokenAt[index]));
        } else {
            metrics.firstToken(seconds(nanos - arrival));
            started[index] = true;
        }
        lastTokenAt[index] = nanos;
    }

    /** Choice {@code index} ended at {@code nanos} for the reason given; later calls for it are ignored. */
    public void finished(int index, Finish reason, long nanos) {
        if (!open[index]) return;
        open[index] = false;
        metrics.finished(reason, seconds(nanos - arrival));
    }

    /** Every choice still open ends now as aborted: the call failed or the client went away. */
    public void abortOpen(long nanos) {
        for (int i = 0; i < open.length; i++) finished(i, Finish.ABORT, nanos);
    }

    private static double seconds(long nanos) {
        return Math.max(0, nanos) / NANOS_PER_SECOND;
    }
}
