package dev.kiln.api.engine;

/**
 * The log-probability of one token at one position, with the most likely alternatives there.
 *
 * @param token       the token at the position (chosen, or given in the prompt)
 * @param logprob     its log-probability under the distribution the engine sampled from (temperature applied,
 *                    before truncation by top-k/top-p)
 * @param topTokens   the most likely tokens at the position, most likely first (possibly empty)
 * @param topLogprobs their log-probabilities
 */
public record TokenLogprobs(int token, float logprob, int[] topTokens, float[] topLogprobs) {}
