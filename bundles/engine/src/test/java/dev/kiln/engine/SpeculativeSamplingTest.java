package dev.kiln.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.api.speculative.Draft;
import dev.kiln.api.speculative.DraftRequest;
import dev.kiln.api.speculative.DraftSession;
import dev.kiln.api.speculative.SpeculativeProposer;
import dev.kiln.engine.testing.BigramModel;
import dev.kiln.engine.testing.ChiSquare;
import dev.kiln.engine.testing.Collector;
import dev.kiln.sampler.DefaultSampler;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * Sampled requests through the whole engine with stochastic drafts from a distribution unlike the target's: the
 * generated tokens follow the target model's distribution exactly. The target is a Markov chain over five tokens,
 * so the distribution of each generated position is known in closed form.
 */
class SpeculativeSamplingTest {
    private static final float[][] TARGET = {
            {1.0f, 0.2f, -0.5f, 0.7f, 0.0f},
            {-0.3f, 0.9f, 0.4f, 0.0f, 1.2f},
            {0.5f, 0.5f, 0.5f, -1.0f, 0.1f},
            {2.0f, -0.4f, 0.3f, 0.3f, -0.2f},
            {0.0f, 1.1f, -0.6f, 0.8f, 0.4f}};
    /** The drafts' chain: deliberately different from the target's. */
    private static final float[][] DRAFT = {
            {0.10f, 0.40f, 0.20f, 0.10f, 0.20f},
            {0.30f, 0.10f, 0.10f, 0.40f, 0.10f},
            {0.05f, 0.05f, 0.60f, 0.20f, 0.10f},
            {0.20f, 0.20f, 0.20f, 0.20f, 0.20f},
            {0.50f, 0.10f, 0.10f, 0.10f, 0.20f}};
    private static final int REQUESTS = 12_000;
    /** One plain token from the prefill, then two drafted tokens and the target's next one in one step. */
    private static final int GENERATED = 4;

    /** Drafts k tokens by walking the draft chain with its own random stream, and says q for each. */
    private static final class ChainProposer implements SpeculativeProposer {
        @Override
        public DraftSession open(CausalLanguageModel target) {
            var random = new SplittableRandom(99);
            return new DraftSession() {
                @Override
                public boolean needsTargetHiddenStates() {
                    return false;
                }

                @Override
                public List<Draft> propose(List<DraftRequest> requests) {
                    List<Draft> drafts = new ArrayList<>();
                    for (DraftRequest r : requests) {
                        int previous = r.tokens()[r.tokens().length - 1];
                        int[] tokens = new int[r.maxTokens()];
                        float[][] q = new float[r.maxTokens()][];
                        for (int j = 0; j < tokens.length; j++) {
                            q[j] = DRAFT[previous].clone();
                            tokens[j] = draw(q[j], random.nextDouble());
                            previous = tokens[j];
                        }
                        drafts.add(new Draft(tokens, q));
                    }
                    return drafts;
                }

                @Override
                public void close() {}
            };
        }

        private static int draw(float[] q, double u) {
            double cumulative = 0;
            for (int v = 0; v < q.length; v++) {
                cumulative += q[v];
                if (u < cumulative) return v;
            }
            return q.length - 1;
        }
    }

    @Test
    void sampledOutputsFollowTheTargetDistributionWhateverTheDrafts() {
        var model = new BigramModel(TARGET);
        int vocab = TARGET.length;
        var settings = EngineSettings.defaults().withMaxNumSeqs(64).withMaxWaiting(REQUESTS).withKvCacheMemory(1 << 20);
        long[][] counts = new long[GENERATED][vocab];
        long[][] pairs = new long[1][vocab * vocab];
        try (var engine = new InferenceEngineCore(model, settings, new DefaultSampler(), List.of())) {
            engine.setSpeculation(new ChainProposer(), new SpeculationSettings("chain", 2, 64));
            var params = new SamplingParams(1.0, 1, 0, 0, 0, 0, 1, null, 0);
            Collector[] collectors = new Collector[REQUESTS];
            for (int i = 0; i < REQUESTS; i++) {
                var request = new GenerationRequest("r" + i, new int[] {0}, params, GENERATED, 0, null, true, -1, null);
                collectors[i] = new Collector();
                engine.submit(request, collectors[i]);
            }
            for (Collector c : collectors) {
                assertNull(c.await().error());
                int[] tokens = c.tokens();
                assertEquals(GENERATED, tokens.length);
                for (int t = 0; t < GENERATED; t++) counts[t][tokens[t]]++;
                pairs[0][tokens[1] * vocab + tokens[2]]++;
            }
            assertTrue(engine.stats().draftTokensAccepted() > 0);
            assertTrue(engine.stats().draftTokensAccepted() < engine.stats().draftTokensProposed());
            System.out.println("drafts: " + engine.speculativeStats());
        } finally {
            model.close();
        }
        // The marginal of each position: the chain's distribution after t + 1 steps from token 0.
        double[] marginal = model.probabilities(0);
        double[][] step = new double[vocab][];
        for (int t = 0; t < vocab; t++) step[t] = model.probabilities(t);
        double[][] marginals = new double[GENERATED][];
        marginals[0] = marginal;
        for (int t = 1; t < GENERATED; t++) {
            double[] next = new double[vocab];
            for (int a = 0; a < vocab; a++) {
                for (int b = 0; b < vocab; b++) next[b] += marginals[t - 1][a] * step[a][b];
            }
            marginals[t] = next;
        }
        for (int t = 0; t < GENERATED; t++) ChiSquare.assertFits(counts[t], marginals[t], "generated token " + t);
        // The two drafted positions jointly: P(a, b) = marginal_1(a) * P(b | a).
        double[] joint = new double[vocab * vocab];
        for (int a = 0; a < vocab; a++) {
            for (int b = 0; b < vocab; b++) joint[a * vocab + b] = marginals[1][a] * step[a][b];
        }
        ChiSquare.assertFits(pairs[0], joint, "generated tokens 1 and 2 together");
    }
}
