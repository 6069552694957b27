package dev.kiln.server.metrics;

import java.util.Arrays;

/**
 * A histogram's state at one moment, in Prometheus' shape.
 *
 * @param upperBounds      the buckets' inclusive upper bounds, ascending, without the implicit {@code +Inf}
 * @param cumulativeCounts observations at or below each bound, then one more entry for {@code +Inf} (all of them)
 * @param sum              the sum of every observation
 */
public record HistogramSnapshot(double[] upperBounds, long[] cumulativeCounts, double sum) {
    public HistogramSnapshot {
        if (cumulativeCounts.length != upperBounds.length + 1) {
            throw new IllegalArgumentException("expected " + (upperBounds.length + 1) + " cumulative counts, got "
                    + cumulativeCounts.length);
        }
        upperBounds = upperBounds.clone();
        cumulativeCounts = cumulativeCounts.clone();
    }

    /** Number of observations. */
    public long count() {
        return cumulativeCounts[cumulativeCounts.length - 1];
    }

    /** The mean observation, or NaN when there is none. */
    public double mean() {
        return count() == 0 ? Double.NaN : sum / count();
    }

    @Override
    public double[] upperBounds() {
        return upperBounds.clone();
    }

    @Override
    public long[] cumulativeCounts() {
        return cumulativeCounts.clone();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof HistogramSnapshot h && Arrays.equals(upperBounds, h.upperBounds)
                && Arrays.equals(cumulativeCounts, h.cumulativeCounts) && Double.compare(sum, h.sum) == 0;
    }

    @Override
    public int hashCode() {
        return 31 * (31 * Arrays.hashCode(upperBounds) + Arrays.hashCode(cumulativeCounts)) + Double.hashCode(sum);
    }

    @Override
    public String toString() {
        return "HistogramSnapshot[count=" + count() + ", sum=" + sum + ", bounds=" + Arrays.toString(upperBounds) + "]";
    }
}
