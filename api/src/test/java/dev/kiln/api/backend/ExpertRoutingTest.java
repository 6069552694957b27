package dev.kiln.api.backend;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kiln.api.backend.ExpertRouting.Scoring;
import dev.kiln.api.backend.ExpertRouting.Selection;
import org.junit.jupiter.api.Test;

/**
 * Routing decisions on hand-made logits whose answers follow from the reference's rules: which scores select,
 * which weight, how groups are masked, and how choices become per-expert token lists.
 */
class ExpertRoutingTest {
    private static final double EPS = 1e-6;

    /** The logit whose sigmoid is {@code p}. */
    private static float logit(double p) {
        return (float) Math.log(p / (1 - p));
    }

    private static float[] sigmoidLogits(double... scores) {
        float[] l = new float[scores.length];
        for (int i = 0; i < l.length; i++) l[i] = logit(scores[i]);
        return l;
    }

    @Test
    void theCorrectionBiasSelectsButNeverWeights() {
        // Expert 0 has the best score, but the bias makes experts 2 and 3 win; their weights are their own scores.
        var router = new ExpertRouting(4, 2, Scoring.SIGMOID, Selection.NOAUX_TC, 1, 1, false, 1.0,
                new float[] {-1f, 0f, 0.5f, 0.4f});
        var a = router.route(sigmoidLogits(0.9, 0.3, 0.2, 0.25), 1);
        assertArrayEquals(new int[0], a.tokens()[0]);
        assertArrayEquals(new int[] {0}, a.tokens()[2]);
        assertArrayEquals(new int[] {0}, a.tokens()[3]);
        assertEquals(0.2, a.weights()[2][0], EPS);
        assertEquals(0.25, a.weights()[3][0], EPS);
    }

    @Test
    void groupsAreRankedByTheirTwoBestBiasedScoresAndTheRestMaskedWithZero() {
        // Four groups of two. Group sums of the two best: g0 = 0.6+0.5, g1 = 0.9+0.1, g2 = 0.7+0.7, g3 = 0.2+0.2.
        // Keeping two groups keeps g2 and g0, although expert 2 (g1) has the single best score.
        var router = new ExpertRouting(8, 2, Scoring.SIGMOID, Selection.NOAUX_TC, 4, 2, true, 2.5, new float[8]);
        var a = router.route(sigmoidLogits(0.6, 0.5, 0.9, 0.1, 0.7, 0.7, 0.2, 0.2), 1);
        assertArrayEquals(new int[] {0}, a.tokens()[4]);
        assertArrayEquals(new int[] {0}, a.tokens()[5]);
        assertEquals(0, a.tokens()[2].length);
        // Normalised over the two chosen, then scaled: 0.7/1.4 · 2.5 each.
        assertEquals(1.25, a.weights()[4][0], EPS);
        assertEquals(1.25, a.weights()[5][0], EPS);
    }

    @Test
    void maskedExpertsScoreZeroSoTheyBeatNegativeSelectionScores() {
        // A strongly negative bias drives the kept group's selection scores below zero; the masked experts (0.0)
        // then win, as in the reference, and are weighted by their own scores.
        var router = new ExpertRouting(4, 1, Scoring.SIGMOID, Selection.NOAUX_TC, 2, 1, false, 1.0,
                new float[] {-5f, -5f, -2f, -2f});
        var a = router.route(sigmoidLogits(0.5, 0.5, 0.4, 0.3), 1);
        // Group sums: g0 = -9, g1 = -1.6 - 1.7 = -3.3: g1 is kept, and its -1.6 and -1.7 lose to the masked 0.0.
        assertArrayEquals(new int[] {0}, a.tokens()[0]);
        assertEquals(0.5, a.weights()[0][0], EPS);
    }

    @Test
    void softmaxGreedyTakesTheBestScoresWithoutRenormalising() {
        var router = new ExpertRouting(4, 2, Scoring.SOFTMAX, Selection.GREEDY, 1, 1, false, 1.0, null);
        float[] logits = {1f, 3f, 2f, 0f};
        var a = router.route(logits, 1);
        double sum = Math.exp(1) + Math.exp(3) + Math.exp(2) + Math.exp(0);
        assertEquals(Math.exp(3) / sum, a.weights()[1][0], EPS);
        assertEquals(Math.exp(2) / sum, a.weights()[2][0], EPS);
        assertEquals(0, a.tokens()[0].length);
    }

    @Test
    void groupLimitedGreedyRanksGroupsByTheirBestScore() {
        // Groups {0,1} and {2,3}: g0's best 0.4 beats g1's best 0.35 even though g1's two together are larger.
        var router = new ExpertRouting(4, 2, Scoring.SOFTMAX, Selection.GROUP_LIMITED_GREEDY, 2, 1, false, 1.0, null);
        float[] logits = {(float) Math.log(0.4), (float) Math.log(0.01), (float) Math.log(0.35), (float) Math.log(0.24)};
        var a = router.route(logits, 1);
        assertArrayEquals(new int[] {0}, a.tokens()[0]);
        assertArrayEquals(new int[] {0}, a.tokens()[1]);
        assertEquals(0.01, a.weights()[1][0], EPS);
    }

    @Test
    void tiesGoToTheLowerIndexAndTokensAreListedPerExpertInOrder() {
        var router = new ExpertRouting(3, 1, Scoring.SOFTMAX, Selection.GREEDY, 1, 1, false, 1.0, null);
        float[] logits = {0f, 0f, 0f, /* token 1 */ 0f, 5f, 0f, /* token 2 */ 1f, 1f, 1f};
        var a = router.route(logits, 3);
        assertArrayEquals(new int[] {0, 2}, a.tokens()[0]);
        assertArrayEquals(new int[] {1}, a.tokens()[1]);
        assertArrayEquals(new int[0], a.tokens()[2]);
    }

    @Test
    void inconsistentRoutingIsRefused() {
        assertThrows(IllegalArgumentException.class,
                () -> new ExpertRouting(8, 2, Scoring.SIGMOID, Selection.NOAUX_TC, 3, 1, true, 1, new float[8]));
        assertThrows(IllegalArgumentException.class,
                () -> new ExpertRouting(8, 2, Scoring.SIGMOID, Selection.NOAUX_TC, 4, 2, true, 1, null));
        assertThrows(IllegalArgumentException.class,
                () -> new ExpertRouting(8, 9, Scoring.SOFTMAX, Selection.GREEDY, 1, 1, true, 1, null));
    }
}
