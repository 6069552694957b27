package dev.kiln.api.engine;

import java.util.List;

/**
 * What a sequence produced in one engine step: one token per step normally, several when a speculative draft was
 * accepted, none in a final event that only reports the end.
 *
 * @param tokens         the new token ids, in order
 * @param logprobs       for each new token its log-probabilities, or {@code null} unless the request asked
 * @param promptLogprobs in the first event only, and only when asked: one entry per prompt token after the first
 *                       (the first token has no prediction), else {@code null}
 * @param finish         why the sequence ended with this event, or {@code null} if it continues
 * @param promptTokens   prompt tokens of the request (for usage accounting)
 * @param cachedTokens   prompt tokens that were found in the prefix cache instead of computed
 */
public record TokenEvent(int[] tokens, List<TokenLogprobs> logprobs, List<TokenLogprobs> promptLogprobs,
                         FinishReason finish, int promptTokens, int cachedTokens) {}
