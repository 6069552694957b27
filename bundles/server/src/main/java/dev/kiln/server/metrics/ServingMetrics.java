package dev.kiln.server.metrics;

import java.util.Map;

/**
 * Latencies and outcomes measured in the server's request path since the server started, one observation per
 * engine request (a request with {@code n} choices makes {@code n}). Times are wall-clock seconds from the moment
 * the server received the HTTP request, so they include parsing, tokenization and queueing, as a client sees them.
 */
public interface ServingMetrics {
    /** Seconds from arrival to the first generated token. */
    HistogramSnapshot timeToFirstToken();

    /** Seconds between consecutive token events of one request (several tokens accepted at once count as one). */
    HistogramSnapshot interTokenLatency();

    /** Seconds from arrival to the request's end, whatever the reason. */
    HistogramSnapshot e2eRequestLatency();

    /**
     * Finished requests by reason, with vLLM's {@code finished_reason} values: {@code stop} (a stop token or stop
     * string), {@code length}, {@code abort} (cancelled, e.g. the client disconnected) and {@code error}.
     */
    Map<String, Long> finishedRequests();
}
