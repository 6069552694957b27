package dev.kiln.engine.sampling;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.engine.scheduler.Sequence;
import dev.kiln.engine.testing.ChiSquare;
import dev.kiln.engine.testing.Collector;
import dev.kiln.sampler.DefaultSampler;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * Speculative rejection sampling on a vocabulary of six tokens: whatever distribution the drafts come from, the
 * verified token is distributed exactly as the sampler's own distribution (200,000 draws, chi-square at a false
 * alarm rate of 1e-6, seeded), and drafts are accepted as often as theory says (the overlap sum of min(p, q)).
 */
class RejectionSamplingTest {
    private static final int VOCAB = 6;
    private static final int DRAWS = 200_000;
    private static final float[] LOGITS = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, 2.5f};
    /** Temperature 0.8 and top-k 5: token 4 is cut, the rest reweighted. */
    private static final SamplingParams PARAMS = new SamplingParams(0.8, 1, 5, 0, 0, 0, 1, 11L, 0);

    private final DefaultSampler sampler = new DefaultSampler();
    private final TokenSelector selector = new TokenSelector(VOCAB, new int[0]);

    private static Sequence sequence(SamplingParams params) {
        var request = new GenerationRequest("r", new int[] {0}, params, 10, 0, null, true, -1, null);
        return new Sequence(request, new Collector(), 0);
    }

    /** The distribution the sampler draws from for the test's row. */
    private double[] target(Sequence s) {
        float[] p = sampler.probabilities(LOGITS.clone(), s);
        double[] out = new double[VOCAB];
        for (int v = 0; v < VOCAB; v++) out[v] = p[v];
        return out;
    }

    private record Outcome(long[] tokens, long[] drafts, long accepted) {}

    /** Draws drafts from q (or always {@code fixed} when q is null) and verifies each. */
    private Outcome run(Sequence s, float[] q, int fixed, long seed) {
        var draftRandom = new SplittableRandom(seed);
        long[] tokens = new long[VOCAB];
        long[] drafts = new long[VOCAB];
        long accepted = 0;
        for (int i = 0; i < DRAWS; i++) {
            int draft = q == null ? fixed : draw(q, draftRandom.nextDouble());
            drafts[draft]++;
            TokenSelector.Verdict verdict = selector.verify(s, LOGITS, 0, draft, q, sampler, List.of());
            tokens[verdict.token()]++;
            if (verdict.accepted()) {
                accepted++;
                assertEquals(draft, verdict.token());
            }
        }
        return new Outcome(tokens, drafts, accepted);
    }

    private static int draw(float[] q, double u) {
        double cumulative = 0;
        for (int v = 0; v < q.length; v++) {
            cumulative += q[v];
            if (u < cumulative) return v;
        }
        return q.length - 1;
    }

    private static double overlap(double[] p, float[] q) {
        double sum = 0;
        for (int v = 0; v < p.length; v++) sum += Math.min(p[v], q[v]);
        return sum;
    }

    @Test
    void draftsFromAnotherDistributionYieldTheTargetDistribution() {
        Sequence s = sequence(PARAMS);
        double[] p = target(s);
        assertEquals(0, p[4], "top-k removes the least likely token");
        // Mass where p has none (token 4), too little on the likely tokens, too much on token 3.
        float[] q = {0.10f, 0.20f, 0.10f, 0.35f, 0.15f, 0.10f};
        Outcome o = run(s, q, -1, 5);
        ChiSquare.assertFits(o.tokens(), p, "verified tokens");
        assertFalse(ChiSquare.fits(o.drafts(), p), "the test tells the draft distribution from the target's");
        double rate = (double) o.accepted() / DRAWS;
        assertEquals(overlap(p, q), rate, 5 * Math.sqrt(rate * (1 - rate) / DRAWS), "acceptance rate = sum of min(p, q)");
    }

    @Test
    void deterministicDraftsYieldTheTargetDistributionAndAreAcceptedWithTheirTargetProbability() {
        Sequence s = sequence(PARAMS);
        double[] p = target(s);
        for (int fixed : new int[] {5, 3, 4}) { // the most likely token, an unlikely one, one top-k removed
            Outcome o = run(s, null, fixed, 9 + fixed);
            ChiSquare.assertFits(o.tokens(), p, "verified tokens after always drafting " + fixed);
            double rate = (double) o.accepted() / DRAWS;
            assertEquals(p[fixed], rate, 5 * Math.sqrt(Math.max(rate * (1 - rate), 1e-9) / DRAWS) + 1e-9,
                    "a deterministic draft is accepted with its target probability");
        }
    }

    @Test
    void draftsFromTheTargetDistributionItselfAreAlwaysAccepted() {
        Sequence s = sequence(PARAMS);
        double[] p = target(s);
        float[] q = new float[VOCAB];
        for (int v = 0; v < VOCAB; v++) q[v] = (float) p[v];
        Outcome o = run(s, q, -1, 3);
        ChiSquare.assertFits(o.tokens(), p, "verified tokens");
        assertTrue(o.accepted() > DRAWS * 0.999, "accepted " + o.accepted() + " of " + DRAWS);
    }

    @Test
    void greedyRequestsAcceptExactlyTheArgmax() {
        Sequence s = sequence(SamplingParams.GREEDY);
        for (int draft = 0; draft < VOCAB; draft++) {
            TokenSelector.Verdict verdict = selector.verify(s, LOGITS, 0, draft, null, sampler, List.of());
            assertEquals(5, verdict.token());
            assertEquals(draft == 5, verdict.accepted());
        }
    }
}
