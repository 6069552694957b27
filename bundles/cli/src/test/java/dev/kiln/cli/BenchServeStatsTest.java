package dev.kiln.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Map;
import org.junit.jupiter.api.Test;

class BenchServeStatsTest {
    @Test
    void percentilesInterpolateLikeNumpy() {
        double[] sorted = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
        assertEquals(5.5, BenchServeJob.BenchServe.percentile(sorted, 50), 1e-12);
        assertEquals(9.91, BenchServeJob.BenchServe.percentile(sorted, 99), 1e-12);
        assertEquals(1, BenchServeJob.BenchServe.percentile(sorted, 0), 1e-12);
    }

    @Test
    void statsOfUnsortedValues() {
        Map<String, Double> s = BenchServeJob.BenchServe.stats(new double[] {3, 1, 2});
        assertEquals(2, s.get("mean"), 1e-12);
        assertEquals(2, s.get("median"), 1e-12);
        assertTrue(Double.isNaN(BenchServeJob.BenchServe.stats(new double[0]).get("p99")));
    }
}
