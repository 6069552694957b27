package dev.kiln.api.speculative;

/**
 * One sequence asking for draft tokens, or only telling a {@link DraftSession} what the target computed.
 *
 * <p>{@code tokens} are the sequence's tokens as the target decided them: the target has computed the keys and
 * values of all but the last one, whose successor the first draft token guesses. When the session
 * {@link DraftSession#needsTargetHiddenStates() needs hidden states}, {@code targetHidden} holds the target's
 * final-norm hidden states of the positions {@code targetHiddenFrom .. targetHiddenFrom + rows - 1} that the target
 * computed in its last step ({@code rows × hiddenSize} floats, row after row): the state at position {@code j} is
 * the one that predicted {@code tokens[j + 1]}. Positions before {@code targetHiddenFrom} were given in earlier
 * requests, found in the prefix cache, or computed while another proposer was active.
 *
 * @param sequenceId       stable id of the sequence for the session's own per-sequence state
 * @param tokens           prompt and accepted output tokens, oldest first
 * @param reference        reference text tokens the request supplied for matching, or an empty array
 * @param targetHidden     hidden states of the positions the target computed last, or {@code null} (not needed,
 *                         or not available this time)
 * @param targetHiddenFrom the position of the first row of {@code targetHidden}
 * @param maxTokens        the most draft tokens wanted; 0 when the sequence only reports what was computed (its
 *                         prompt is still being prefilled, or speculation is paused)
 */
public record DraftRequest(String sequenceId, int[] tokens, int[] reference, float[] targetHidden, int targetHiddenFrom,
                           int maxTokens) {
    public DraftRequest {
        if (sequenceId == null) throw new IllegalArgumentException("sequenceId is required");
        if (tokens == null) throw new IllegalArgumentException("tokens are required");
        if (reference == null) reference = new int[0];
        if (maxTokens < 0) throw new IllegalArgumentException("maxTokens must be >= 0, got " + maxTokens);
        if (targetHidden != null && (targetHiddenFrom < 0 || targetHiddenFrom >= Math.max(1, tokens.length))) {
            throw new IllegalArgumentException("hidden states from position " + targetHiddenFrom + " of a sequence of "
                    + tokens.length + " tokens");
        }
    }

    /** Rows of {@link #targetHidden()} for a model of the given hidden size (0 without hidden states). */
    public int hiddenRows(int hiddenSize) {
        return targetHidden == null ? 0 : targetHidden.length / hiddenSize;
    }
}
