package dev.kiln.server.prometheus;

import dev.kiln.api.KilnProperties;
import dev.kiln.server.metrics.HistogramSnapshot;
import dev.kiln.server.metrics.ServingMetrics;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.atomic.LongAdder;
import org.osgi.service.component.annotations.Component;

/**
 * The server's latency histograms and finish counters, fed by a {@link RequestTimer} per API call. The bucket
 * bounds are vLLM's, so dashboards written for vLLM read Kiln's histograms the same way; the inter-token buckets
 * start finer (1 ms) because CPU decoding of small models is that fast.
 */
@Component(service = {ServingMetrics.class, RequestMetrics.class}, property = KilnProperties.NAME + "=server")
public final class RequestMetrics implements ServingMetrics {
    static final double[] TTFT_BUCKETS = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
            5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
    static final double[] ITL_BUCKETS = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4,
            0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
    static final double[] E2E_BUCKETS = {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
            60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

    /** How an engine request ended, as vLLM's {@code finished_reason} label values. */
    public enum Finish {
        STOP("stop"), LENGTH("length"), ABORT("abort"), ERROR("error");

        final String label;

        Finish(String label) {
            this.label = label;
        }
    }

    private final Histogram timeToFirstToken = new Histogram(TTFT_BUCKETS);
    private final Histogram interTokenLatency = new Histogram(ITL_BUCKETS);
    private final Histogram e2eRequestLatency = new Histogram(E2E_BUCKETS);
    private final LongAdder[] finished = new LongAdder[Finish.values().length];

    /** Created by Declarative Services, or directly in tests. */
    public RequestMetrics() {
        for (int i = 0; i < finished.length; i++) finished[i] = new LongAdder();
    }

    /** Starts timing an API call that arrived at {@code arrivalNanos} ({@link System#nanoTime()}). */
    public RequestTimer start(long arrivalNanos) {
        return new RequestTimer(this, arrivalNanos);
    }

    void firstToken(double seconds) {
        timeToFirstToken.observe(seconds);
    }

    void interToken(double seconds) {
        interTokenLatency.observe(seconds);
    }

    void finished(Finish reason, double seconds) {
        e2eRequestLatency.observe(seconds);
        finished[reason.ordinal()].increment();
    }

    @Override
    public HistogramSnapshot timeToFirstToken() {
        return timeToFirstToken.snapshot();
    }

    @Override
    public HistogramSnapshot interTokenLatency() {
        return interTokenLatency.snapshot();
    }

    @Override
    public HistogramSnapshot e2eRequestLatency() {
        return e2eRequestLatency.snapshot();
    }

    @Override
    public Map<String, Long> finishedRequests() {
        Map<String, Long> out = new LinkedHashMap<>();
        for (Finish f : Finish.values()) out.put(f.label, finished[f.ordinal()].sum());
        return out;
    }
}
