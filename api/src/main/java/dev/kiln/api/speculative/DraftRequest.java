package dev.kiln.api.speculative;

/**
 * One sequence asking for draft tokens.
 *
 * @param sequenceId   stable id of the sequence for the proposer's own per-sequence state
 * @param tokens       prompt and accepted output tokens, oldest first
 * @param reference    reference text tokens the request supplied for matching, or an empty array
 * @param targetHidden the target model's final hidden state at the last accepted token, or {@code null} unless
 *                     the proposer {@link SpeculativeProposer#needsTargetHiddenStates() needs it}
 * @param maxTokens    the most draft tokens wanted
 */
public record DraftRequest(String sequenceId, int[] tokens, int[] reference, float[] targetHidden, int maxTokens) {}
