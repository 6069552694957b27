package dev.kiln.engine.testing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Pearson's chi-square goodness-of-fit test at a false-alarm rate of one in a million. */
public final class ChiSquare {
    /** Upper quantiles of the chi-square distribution at 1 - 1e-6, by degrees of freedom 1..24. */
    private static final double[] CRITICAL = {0, 23.928, 27.631, 30.665, 33.377, 35.888, 38.258, 40.522, 42.701,
            44.811, 46.863, 48.866, 50.825, 52.747, 54.635, 56.493, 58.324, 60.131, 61.914,
            63.677, 65.421, 67.147, 68.856, 70.55, 72.229};

    private ChiSquare() {}

    /** The statistic of observed counts against expected probabilities over categories of positive probability. */
    public static double statistic(long[] counts, double[] probabilities) {
        long n = 0;
        for (long c : counts) n += c;
        double x = 0;
        for (int i = 0; i < counts.length; i++) {
            if (probabilities[i] == 0) continue;
            double expected = n * probabilities[i];
            x += (counts[i] - expected) * (counts[i] - expected) / expected;
        }
        return x;
    }

    /** Whether the counts are consistent with the probabilities (tokens of probability 0 never occur). */
    public static boolean fits(long[] counts, double[] probabilities) {
        int categories = 0;
        for (int i = 0; i < counts.length; i++) {
            if (probabilities[i] == 0 && counts[i] > 0) return false;
            if (probabilities[i] > 0) categories++;
        }
        return statistic(counts, probabilities) < CRITICAL[categories - 1];
    }

    /** Asserts that the counts fit the probabilities, saying how far off they are if not. */
    public static void assertFits(long[] counts, double[] probabilities, String what) {
        for (int i = 0; i < counts.length; i++) {
            if (probabilities[i] == 0) assertEquals(0, counts[i], what + ": token " + i + " has probability 0");
        }
        assertTrue(fits(counts, probabilities), what + ": chi-square " + statistic(counts, probabilities) + " for counts "
                + java.util.Arrays.toString(counts) + " against " + java.util.Arrays.toString(probabilities));
    }
}
