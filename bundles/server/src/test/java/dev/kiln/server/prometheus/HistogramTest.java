package dev.kiln.server.prometheus;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.server.metrics.HistogramSnapshot;
import org.junit.jupiter.api.Test;

class HistogramTest {
    @Test
    void bucketsAreInclusiveUpperBoundsAndCumulative() {
        Histogram h = new Histogram(0.1, 1, 10);
        for (double v : new double[] {0.05, 0.1, 0.5, 1, 3, 10, 50, 50}) h.observe(v);
        HistogramSnapshot s = h.snapshot();
        // <=0.1: 0.05, 0.1 | <=1: +0.5, 1 | <=10: +3, 10 | +Inf: +50, 50
        assertArrayEquals(new long[] {2, 4, 6, 8}, s.cumulativeCounts());
        assertEquals(8, s.count());
        assertEquals(0.05 + 0.1 + 0.5 + 1 + 3 + 10 + 100, s.sum(), 1e-9);
        assertEquals(s.sum() / 8, s.mean(), 1e-12);
    }

    @Test
    void nanIsIgnoredAndAnEmptyHistogramHasNoMean() {
        Histogram h = new Histogram(1);
        h.observe(Double.NaN);
        assertEquals(0, h.snapshot().count());
        assertTrue(Double.isNaN(h.snapshot().mean()));
    }

    @Test
    void boundsMustAscendStrictly() {
        assertThrows(IllegalArgumentException.class, () -> new Histogram(1, 1));
        assertThrows(IllegalArgumentException.class, () -> new Histogram(2, 1));
        assertThrows(IllegalArgumentException.class, () -> new Histogram(1, Double.POSITIVE_INFINITY));
    }

    @Test
    void concurrentObservationsAreAllCounted() throws InterruptedException {
        Histogram h = new Histogram(RequestMetrics.ITL_BUCKETS);
        Thread[] threads = new Thread[4];
        for (int t = 0; t < threads.length; t++) {
            threads[t] = Thread.ofPlatform().start(() -> {
                for (int i = 0; i < 10_000; i++) h.observe((i % 100) / 1000.0);
            });
        }
        for (Thread t : threads) t.join();
        assertEquals(40_000, h.snapshot().count());
    }
}
