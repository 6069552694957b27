package dev.kiln.api.backend;

import java.util.Arrays;

/**
 * DeepSeekMoE's routing rule: which experts each token goes to and with what weight, given the router's logits.
 * {@link #route} computes it on the host (a few floats per token) and turns it around into the tokens each expert
 * serves, so that every expert runs once over all of its tokens; a backend's {@link RoutedExperts} computes the
 * same rule where the logits live.
 *
 * <p>Per token, exactly as the reference computes it:
 * <ol>
 *   <li>scores {@code s = softmax(logits)} (V2) or {@code sigmoid(logits)} (V3);</li>
 *   <li>selection scores {@code c = s + e_score_correction_bias} with {@code noaux_tc} (V3's load balancing bias
 *       steers the choice but never weights an expert), {@code c = s} otherwise;</li>
 *   <li>group-limited selection: each of {@code n_group} groups is scored (the sum of its two best {@code c} under
 *       {@code noaux_tc}, its best {@code s} under {@code group_limited_greedy}), the best {@code topk_group}
 *       groups are kept and every other expert's selection score becomes 0.0 (a value, not minus infinity: the
 *       reference masks with 0, so a masked expert can still win against negative scores);</li>
 *   <li>the {@code k} experts with the highest selection scores, the lower index first on ties;</li>
 *   <li>their weights are their scores {@code s}, divided by their sum (plus 1e-20) when {@code norm_topk_prob},
 *       times {@code routed_scaling_factor}.</li>
 * </ol>
 */
public final class ExpertRouting {
    /** How router logits become scores. */
    public enum Scoring { SOFTMAX, SIGMOID }

    /** Which experts are eligible for a token. */
    public enum Selection {
        /** All experts. */
        GREEDY,
        /** Experts of the {@code topk_group} groups with the highest single score (DeepSeek-V2). */
        GROUP_LIMITED_GREEDY,
        /** Experts of the {@code topk_group} groups with the highest sum of two best biased scores (DeepSeek-V3). */
        NOAUX_TC
    }

    /**
     * The tokens each expert serves: for expert {@code e}, {@code tokens[e]} (ascending) with the matching
     * {@code weights[e]}; experts no token chose have empty arrays.
     */
    public record Assignment(int[][] tokens, float[][] weights) {}

    private final int experts;
    private final int perToken;
    private final Scoring scoring;
    private final Selection selection;
    private final int groups;
    private final int groupsPerToken;
    private final boolean normalize;
    private final double scalingFactor;
    private final float[] correctionBias;

    /**
     * @param experts        routed experts ({@code n_routed_experts})
     * @param perToken       experts per token ({@code num_experts_per_tok})
     * @param groups         expert groups ({@code n_group}); experts must divide evenly
     * @param groupsPerToken groups a token may choose from ({@code topk_group})
     * @param normalize      {@code norm_topk_prob}
     * @param scalingFactor  {@code routed_scaling_factor}
     * @param correctionBias {@code e_score_correction_bias} for {@link Selection#NOAUX_TC}, else {@code null}
     * @throws IllegalArgumentException if the numbers do not make a routing
     */
    public ExpertRouting(int experts, int perToken, Scoring scoring, Selection selection, int groups, int groupsPerToken,
                 boolean normalize, double scalingFactor, float[] correctionBias) {
        if (perToken < 1 || perToken > experts || groups < 1 || experts % groups != 0
                || groupsPerToken < 1 || groupsPerToken > groups) {
            throw new IllegalArgumentException("invalid routing: " + perToken + " of " + experts + " experts, "
                    + groupsPerToken + " of " + groups + " groups");
        }
        if ((selection == Selection.NOAUX_TC) != (correctionBias != null)
                || (correctionBias != null && correctionBias.length != experts)) {
            throw new IllegalArgumentException("noaux_tc selection needs a correction bias per expert, and only it");
        }
        this.experts = experts;
        this.perToken = perToken;
        this.scoring = scoring;
        this.selection = selection;
        this.groups = groups;
        this.groupsPerToken = groupsPerToken;
        this.normalize = normalize;
        this.scalingFactor = scalingFactor;
        this.correctionBias = correctionBias == null ? null : correctionBias.clone();
    }

    /** Routed experts. */
    public int experts() {
        return experts;
    }

    /** Experts each token goes to. */
    public int perToken() {
        return perToken;
    }

    /** How logits become scores. */
    public Scoring scoring() {
        return scoring;
    }

    /** Which experts are eligible. */
    public Selection selection() {
        return selection;
    }

    /** Expert groups. */
    public int groups() {
        return groups;
    }

    /** Groups each token may choose from. */
    public int groupsPerToken() {
        return groupsPerToken;
    }

    /** Whether the chosen experts' weights are divided by their sum. */
    public boolean normalize() {
        return normalize;
    }

    /** The factor every routed weight is multiplied by. */
    public double scalingFactor() {
        return scalingFactor;
    }

    /** The selection bias per expert under {@link Selection#NOAUX_TC} (a copy), else {@code null}. */
    public float[] correctionBias() {
        return correctionBias == null ? null : correctionBias.clone();
    }

    /** Routes {@code tokens} tokens given their logits {@code [tokens, experts]} row-major. */
    public Assignment route(float[] logits, int tokens) {
        int[] chosen = new int[tokens * perToken];
        float[] weights = new float[tokens * perToken];
        double[] scores = new double[experts];
        double[] selectionScores = new double[experts];
        for (int t = 0; t < tokens; t++) {
            scores(logits, t * experts, scores);
            for (int e = 0; e < experts; e++) {
                selectionScores[e] = selection == Selection.NOAUX_TC ? scores[e] + correctionBias[e] : scores[e];
            }
            if (selection != Selection.GREEDY && groupsPerToken < groups) maskGroups(scores, selectionScores);
            int[] top = topK(selectionScores, perToken);
            double sum = 0;
            for (int e : top) sum += scores[e];
            for (int j = 0; j < perToken; j++) {
                double w = scores[top[j]];
                if (normalize) w /= sum + 1e-20;
                chosen[t * perToken + j] = top[j];
                weights[t * perToken + j] = (float) (w * scalingFactor);
            }
        }
        return invert(chosen, weights, tokens);
    }

    private void scores(float[] logits, int offset, double[] out) {
        if (scoring == Scoring.SIGMOID) {
            for (int e = 0; e < experts; e++) out[e] = 1.0 / (1.0 + Math.exp(-logits[offset + e]));
            return;
        }
        double max = Double.NEGATIVE_INFINITY;
        for (int e = 0; e < experts; e++) max = Math.max(max, logits[offset + e]);
        double sum = 0;
        for (int e = 0; e < experts; e++) sum += out[e] = Math.exp(logits[offset + e] - max);
        for (int e = 0; e < experts; e++) out[e] /= sum;
    }

    /** Zeroes the selection scores of every expert outside the best {@code groupsPerToken} groups. */
    private void maskGroups(double[] scores, double[] selectionScores) {
        int size = experts / groups;
        double[] groupScores = new double[groups];
        for (int g = 0; g < groups; g++) {
            if (selection == Selection.NOAUX_TC) {
                int[] best = topK(Arrays.copyOfRange(selectionScores, g * size, (g + 1) * size), Math.min(2, size));
                for (int i : best) groupScores[g] += selectionScores[g * size + i];
            } else {
                double max = Double.NEGATIVE_INFINITY;
                for (int i = 0; i < size; i++) max = Math.max(max, scores[g * size + i]);
                groupScores[g] = max;
            }
        }
        boolean[] kept = new boolean[groups];
        for (int g : topK(groupScores, groupsPerToken)) kept[g] = true;
        for (int e = 0; e < experts; e++) {
            if (!kept[e / size]) selectionScores[e] = 0.0;
        }
    }

    /** Indices of the k largest values, largest first, the lower index first among equal values. */
    private static int[] topK(double[] values, int k) {
        int[] top = new int[k];
        boolean[] taken = new boolean[values.length];
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int i = 0; i < values.length; i++) {
                if (!taken[i] && (best < 0 || values[i] > values[best])) best = i;
            }
            taken[best] = true;
            top[j] = best;
        }
        return top;
    }

    /** Turns per-token choices into per-expert token lists, tokens ascending within each. */
    private Assignment invert(int[] chosen, float[] weights, int tokens) {
        int[] counts = new int[experts];
        for (int e : chosen) counts[e]++;
        int[][] expertTokens = new int[experts][];
        float[][] expertWeights = new float[experts][];
        for (int e = 0; e < experts; e++) {
            expertTokens[e] = new int[counts[e]];
            expertWeights[e] = new float[counts[e]];
        }
        int[] filled = new int[experts];
        for (int t = 0; t < tokens; t++) {
            for (int j = 0; j < perToken; j++) {
                int e = chosen[t * perToken + j];
                expertTokens[e][filled[e]] = t;
                expertWeights[e][filled[e]++] = weights[t * perToken + j];
            }
        }
        return new Assignment(expertTokens, expertWeights);
    }
}
