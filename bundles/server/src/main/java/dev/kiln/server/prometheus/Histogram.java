package dev.kiln.server.prometheus;

import dev.kiln.server.metrics.HistogramSnapshot;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.DoubleAdder;

/**
 * A fixed-bucket histogram that many request threads observe into without locking. A snapshot's count is the sum
 * of its buckets, so its cumulative counts are always consistent; its sum may lag an observation in flight.
 */
final class Histogram {
    private final double[] bounds;
    private final AtomicLongArray buckets;
    private final DoubleAdder sum = new DoubleAdder();

    /** @param bounds strictly ascending, finite upper bounds; {@code +Inf} is implicit */
    Histogram(double... bounds) {
        for (int i = 0; i < bounds.length; i++) {
            if (!Double.isFinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
                throw new IllegalArgumentException("bucket bounds must be finite and strictly ascending: " + Arrays.toString(bounds));
            }
        }
        this.bounds = bounds.clone();
        this.buckets = new AtomicLongArray(bounds.length + 1);
    }

    /** Records one value; NaN is ignored (a clock cannot produce it, a bug could). */
    void observe(double value) {
        if (Double.isNaN(value)) return;
        int i = Arrays.binarySearch(bounds, value);
        // An exact hit belongs to that bucket (bounds are inclusive); otherwise the first larger bound.
        int bucket = i >= 0 ? i : -i - 1;
        buckets.incrementAndGet(bucket);
        sum.add(value);
    }

    HistogramSnapshot snapshot() {
        long[] cumulative = new long[bounds.length + 1];
        long running = 0;
        for (int i = 0; i < cumulative.length; i++) {
            running += buckets.get(i);
            cumulative[i] = running;
        }
        return new HistogramSnapshot(bounds, cumulative, sum.sum());
    }
}
