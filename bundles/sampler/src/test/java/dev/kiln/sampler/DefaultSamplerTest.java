package dev.kiln.sampler;

import static dev.kiln.sampler.View.params;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.sampling.SamplingParams;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.random.RandomGenerator;
import org.junit.jupiter.api.Test;

/**
 * The sampler's truncations computed exactly, its draws checked statistically against the truncated distribution,
 * and its determinism for a seeded stream.
 */
class DefaultSamplerTest {
    private final DefaultSampler sampler = new DefaultSampler();

    /** Logits whose softmax at temperature 1 is exactly {0.5, 0.3, 0.15, 0.05} up to float rounding. */
    private static final float[] FOUR = logitsOf(0.5, 0.3, 0.15, 0.05);

    @Test
    void greedyTakesTheFirstLargestLogitWithoutTouchingTheRandomStream() {
        float[] logits = {1f, 3f, -2f, 3f, 2.5f};
        assertEquals(1, sampler.sample(logits.clone(), View.of(SamplingParams.GREEDY), forbiddenRandom()));
        float[] p = sampler.probabilities(logits.clone(), View.of(SamplingParams.GREEDY));
        assertArrayEquals(new float[] {0, 1, 0, 0, 0}, p);
    }

    @Test
    void temperatureAloneGivesTheScaledSoftmaxOverTheWholeVocabulary() {
        float[] logits = {0.3f, -1.2f, 2.0f, 0.0f, 1.1f};
        for (double t : new double[] {0.25, 1.0, 3.0}) {
            float[] p = sampler.probabilities(logits.clone(), View.of(params(t, 1, 0, 0)));
            double[] expected = softmax(logits, t);
            for (int i = 0; i < logits.length; i++) assertEquals(expected[i], p[i], 1e-6, "T=" + t + " token " + i);
        }
    }

    @Test
    void topKKeepsTheKMostLikelyAndBreaksTiesByLowerId() {
        float[] logits = {0f, 2f, 1f, 3f, -1f};
        float[] p = sampler.probabilities(logits.clone(), View.of(params(1, 1, 2, 0)));
        double z = Math.exp(3) + Math.exp(2);
        assertArrayEquals(new float[] {0, (float) (Math.exp(2) / z), 0, (float) (Math.exp(3) / z), 0}, p, 1e-6f);

        float[] ties = {1f, 0f, 1f, 1f, 1f};
        float[] q = sampler.probabilities(ties.clone(), View.of(params(1, 1, 2, 0)));
        assertArrayEquals(new float[] {0.5f, 0, 0.5f, 0, 0}, q, 1e-6f);

        // k at or beyond the vocabulary is no truncation.
        float[] all = sampler.probabilities(logits.clone(), View.of(params(1, 1, 5, 0)));
        assertEquals(5, SortingReference.support(all).length);
    }

    @Test
    void topPKeepsTheSmallestHeadWhoseMassReachesP() {
        assertSupport(new int[] {0}, FOUR, params(1, 0.45, 0, 0));
        assertSupport(new int[] {0, 1}, FOUR, params(1, 0.55, 0, 0));
        assertSupport(new int[] {0, 1}, FOUR, params(1, 0.75, 0, 0));
        assertSupport(new int[] {0, 1, 2}, FOUR, params(1, 0.85, 0, 0));
        assertSupport(new int[] {0, 1, 2, 3}, FOUR, params(1, 0.99, 0, 0));
        float[] p = sampler.probabilities(FOUR.clone(), View.of(params(1, 0.75, 0, 0)));
        assertArrayEquals(new float[] {0.625f, 0.375f, 0, 0}, p, 1e-6f);
    }

    @Test
    void minPDropsTokensBelowAFractionOfTheTopProbability() {
        assertSupport(new int[] {0, 1, 2}, FOUR, params(1, 1, 0, 0.25));
        assertSupport(new int[] {0, 1}, FOUR, params(1, 1, 0, 0.5));
        assertSupport(new int[] {0}, FOUR, params(1, 1, 0, 1.0));
        // Temperature applies first: at T=2 the ratios are square roots, so 0.05/0.5 -> 0.316 passes min-p 0.3.
        assertSupport(new int[] {0, 1, 2, 3}, FOUR, params(2, 1, 0, 0.3));
    }

    @Test
    void truncationsComposeInVllmOrderMinPThenTopKThenTopP() {
        // min-p 0.2 keeps {0,1,2}; top-k 2 keeps {0,1}; renormalised {0.625, 0.375}: top-p 0.6 keeps {0}.
        assertSupport(new int[] {0}, FOUR, params(1, 0.6, 2, 0.2));
        assertSupport(new int[] {0, 1}, FOUR, params(1, 0.7, 2, 0.2));
        assertSupport(new int[] {0, 1}, FOUR, params(1, 1.0, 2, 0.2));
    }

    @Test
    void maskedTokensAreNeverCandidatesAndAFullyMaskedRowIsRefused() {
        float[] logits = {Float.NEGATIVE_INFINITY, 1f, Float.NEGATIVE_INFINITY, 0.5f};
        float[] p = sampler.probabilities(logits.clone(), View.of(params(1, 1, 0, 0)));
        assertArrayEquals(new int[] {1, 3}, SortingReference.support(p));
        var random = new SplittableRandom(3);
        for (int i = 0; i < 1000; i++) {
            int t = sampler.sample(logits.clone(), View.of(params(5, 1, 0, 0)), random);
            assertTrue(t == 1 || t == 3, "drew masked token " + t);
        }
        float[] none = {Float.NEGATIVE_INFINITY, Float.NEGATIVE_INFINITY};
        assertThrows(IllegalArgumentException.class,
                () -> sampler.sample(none, View.of(params(1, 1, 0, 0)), new SplittableRandom(1)));
    }

    /** Random logits and parameters against the sort-everything reference, on small and Qwen-sized vocabularies. */
    @Test
    void matchesTheSortingReferenceOnRandomRows() {
        var random = new SplittableRandom(2024);
        for (int trial = 0; trial < 60; trial++) {
            int vocab = trial < 50 ? 1 + random.nextInt(2000) : 151_936;
            float[] logits = new float[vocab];
            for (int i = 0; i < vocab; i++) logits[i] = (float) (random.nextGaussian() * 3);
            if (trial % 7 == 0) { // plateaus of equal logits exercise the tie rule
                for (int i = 0; i < vocab; i += 3) logits[i] = 1.5f;
            }
            SamplingParams params = params(0.2 + 2 * random.nextDouble(),
                    random.nextInt(3) == 0 ? 1 : 0.05 + 0.95 * random.nextDouble(),
                    random.nextInt(3) == 0 ? 0 : 1 + random.nextInt(Math.max(1, vocab / 2)),
                    random.nextInt(3) == 0 ? 0 : 0.3 * random.nextDouble());
            double[] expected = SortingReference.probabilities(logits, params);
            float[] actual = sampler.probabilities(logits.clone(), View.of(params));
            assertArrayEquals(SortingReference.support(expected), SortingReference.support(actual),
                    "support, trial " + trial + " " + params);
            for (int i = 0; i < vocab; i++) {
                assertEquals(expected[i], actual[i], 1e-6, "trial " + trial + " token " + i + " " + params);
            }
        }
    }

    @Test
    void drawsFollowTheTruncatedDistribution() {
        var random = new SplittableRandom(77);
        float[] logits = new float[12];
        for (int i = 0; i < logits.length; i++) logits[i] = (float) random.nextGaussian() * 2;
        SamplingParams[] cases = {
                params(1, 1, 0, 0),
                params(0.7, 1, 5, 0),
                params(1.3, 0.8, 0, 0),
                params(1, 1, 0, 0.1),
                params(0.9, 0.9, 8, 0.02),
        };
        for (SamplingParams params : cases) {
            assertChiSquareFits(logits, params, 120_000, 1000 + params.hashCode());
        }
    }

    @Test
    void drawsOnALargeVocabularyFollowTheTruncatedDistribution() {
        var random = new SplittableRandom(5);
        float[] logits = new float[4096];
        for (int i = 0; i < logits.length; i++) logits[i] = (float) random.nextGaussian();
        // A few strong tokens scattered over the vocabulary so top-k/top-p cut inside a non-trivial set.
        for (int i = 0; i < 20; i++) logits[random.nextInt(logits.length)] = 4f + (float) random.nextGaussian();
        assertChiSquareFits(logits, params(1, 0.9, 16, 0), 60_000, 9);
    }

    @Test
    void aSeedGivesTheSameTokensAndAnotherSeedOthers() {
        var random = new SplittableRandom(11);
        float[] logits = new float[1000];
        for (int i = 0; i < logits.length; i++) logits[i] = (float) random.nextGaussian();
        SamplingParams params = params(1.0, 0.95, 50, 0.01);
        int[] first = drawMany(logits, params, new SplittableRandom(42), 200);
        int[] again = drawMany(logits, params, new SplittableRandom(42), 200);
        int[] other = drawMany(logits, params, new SplittableRandom(43), 200);
        assertArrayEquals(first, again);
        assertNotEquals(Arrays.toString(first), Arrays.toString(other));
    }

    @Test
    void aQwenSizedVocabularyIsSampledWithoutSorting() {
        var random = new SplittableRandom(8);
        float[] logits = new float[151_936];
        for (int i = 0; i < logits.length; i++) logits[i] = (float) (random.nextGaussian() * 2);
        float[] row = new float[logits.length];
        SamplingParams params = params(0.8, 0.95, 0, 0);
        var rng = new SplittableRandom(1);
        for (int i = 0; i < 50; i++) { // warm-up
            System.arraycopy(logits, 0, row, 0, row.length);
            sampler.sample(row, View.of(params), rng);
        }
        // The best of 5 batches of 40: a loaded machine's pauses lengthen some batches, never every one, while a full
        // sort of 150k boxed indices would take tens of milliseconds in each (partial selection a few at most).
        int n = 40;
        double millis = Double.MAX_VALUE;
        for (int batch = 0; batch < 5; batch++) {
            long start = System.nanoTime();
            for (int i = 0; i < n; i++) {
                System.arraycopy(logits, 0, row, 0, row.length);
                sampler.sample(row, View.of(params), rng);
            }
            millis = Math.min(millis, (System.nanoTime() - start) / 1e6 / n);
        }
        System.out.printf("top-p 0.95 over 151,936 tokens: %.2f ms per sample (best batch)%n", millis);
        assertTrue(millis < 25, "sampling took " + millis + " ms");
    }

    private int[] drawMany(float[] logits, SamplingParams params, RandomGenerator random, int n) {
        int[] out = new int[n];
        for (int i = 0; i < n; i++) out[i] = sampler.sample(logits.clone(), View.of(params), random);
        return out;
    }

    /**
     * Draws {@code n} tokens and compares their counts with the reference distribution by Pearson's chi-square
     * test at significance 0.001; tokens outside the support must never be drawn.
     */
    private void assertChiSquareFits(float[] logits, SamplingParams params, int n, long seed) {
        double[] expected = SortingReference.probabilities(logits, params);
        int[] counts = new int[logits.length];
        var random = new SplittableRandom(seed);
        float[] row = new float[logits.length];
        for (int i = 0; i < n; i++) {
            System.arraycopy(logits, 0, row, 0, row.length);
            counts[sampler.sample(row, View.of(params), random)]++;
        }
        double chi = 0;
        int categories = 0;
        for (int t = 0; t < logits.length; t++) {
            if (expected[t] == 0) {
                assertEquals(0, counts[t], "token " + t + " is outside the truncated support " + params);
                continue;
            }
            double e = expected[t] * n;
            chi += (counts[t] - e) * (counts[t] - e) / e;
            categories++;
        }
        double critical = chiSquareQuantile999(categories - 1);
        System.out.printf("%s: chi-square %.1f over %d categories (critical %.1f)%n", params, chi, categories, critical);
        assertTrue(chi < critical, "chi-square " + chi + " >= " + critical + " for " + params);
    }

    /** The 0.999 quantile of chi-square with df degrees of freedom (Wilson–Hilferty; exact enough for df >= 1). */
    private static double chiSquareQuantile999(int df) {
        if (df <= 0) return Double.POSITIVE_INFINITY;
        if (df == 1) return 10.83;
        double z = 3.0902;
        double a = 2.0 / (9 * df);
        return df * Math.pow(1 - a + z * Math.sqrt(a), 3);
    }

    private void assertSupport(int[] expected, float[] logits, SamplingParams params) {
        float[] p = sampler.probabilities(logits.clone(), View.of(params));
        assertArrayEquals(expected, SortingReference.support(p), params.toString());
        double sum = 0;
        for (float v : p) sum += v;
        assertEquals(1.0, sum, 1e-6);
    }

    private static float[] logitsOf(double... probabilities) {
        float[] l = new float[probabilities.length];
        for (int i = 0; i < l.length; i++) l[i] = (float) Math.log(probabilities[i]);
        return l;
    }

    private static double[] softmax(float[] logits, double t) {
        double max = Double.NEGATIVE_INFINITY;
        for (float l : logits) max = Math.max(max, l);
        double[] p = new double[logits.length];
        double sum = 0;
        for (int i = 0; i < p.length; i++) sum += p[i] = Math.exp((logits[i] - max) / t);
        for (int i = 0; i < p.length; i++) p[i] /= sum;
        return p;
    }

    /** A random stream that fails the test if anything draws from it. */
    private static RandomGenerator forbiddenRandom() {
        return () -> {
            throw new AssertionError("greedy decoding must not consume randomness");
        };
    }
}
