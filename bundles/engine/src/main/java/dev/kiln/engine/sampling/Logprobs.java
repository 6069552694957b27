package dev.kiln.engine.sampling;

import dev.kiln.api.engine.TokenLogprobs;

/**
 * Log-probabilities of one logits row: {@code log_softmax(logits / T)} with T the request's temperature (1 for
 * greedy requests, whose distribution is the model's own), before any truncation, and the most likely tokens.
 * Rows are read in place from the step's logits buffer, without copies.
 */
public final class Logprobs {
    private Logprobs() {}

    /**
     * The log-probability of {@code token} in the row {@code values[offset .. offset + vocab)} and the
     * {@code top} most likely tokens there.
     */
    public static TokenLogprobs of(float[] values, int offset, int vocab, int token, int top, double temperature) {
        double inverse = temperature > 0 ? 1.0 / temperature : 1.0;
        float max = Float.NEGATIVE_INFINITY;
        for (int i = offset; i < offset + vocab; i++) max = Math.max(max, values[i]);
        double sum = 0;
        for (int i = offset; i < offset + vocab; i++) sum += Math.exp((values[i] - (double) max) * inverse);
        double logSum = Math.log(sum);
        int[] topTokens = TopTokens.select(values, offset, vocab, top);
        float[] topLogprobs = new float[topTokens.length];
        for (int i = 0; i < topTokens.length; i++) {
            topLogprobs[i] = logprob(values[offset + topTokens[i]], max, inverse, logSum);
        }
        return new TokenLogprobs(token, logprob(values[offset + token], max, inverse, logSum), topTokens, topLogprobs);
    }

    private static float logprob(float value, float max, double inverse, double logSum) {
        return (float) ((value - (double) max) * inverse - logSum);
    }
}
