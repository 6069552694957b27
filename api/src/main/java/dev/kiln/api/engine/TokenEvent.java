package dev.kiln.api.engine;

/**
 * Tokens a sequence produced in one engine step: one per step normally, several when a speculative draft was
 * accepted.
 *
 * @param tokens   the new token ids, in order
 * @param logprobs log-probability of each new token under the target distribution, or {@code null}
 * @param finish   why the sequence ended with this event, or {@code null} if it continues
 */
public record TokenEvent(int[] tokens, float[] logprobs, FinishReason finish) {}
