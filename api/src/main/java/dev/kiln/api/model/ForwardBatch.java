package dev.kiln.api.model;

import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.backend.PendingTokens;

/**
 * The input of one batched forward step: the query tokens of every scheduled sequence with their positions and
 * cache placement, and which rows need logits.
 *
 * @param tokens              the query tokens of all sequences, sequence after sequence; with pending tokens, a
 *                            negative id is a {@linkplain PendingTokens#placeholder placeholder} for one of them
 * @param positions           the position of each token within its sequence
 * @param attention           where each sequence's tokens sit and which cache blocks hold its context
 * @param logitRows           indices into {@code tokens} whose next-token logits are wanted, ascending: usually the
 *                            last token of each sequence, every verified token of a speculative draft, or all
 * @param returnHiddenStates  whether the final hidden states of {@code logitRows} are also wanted (MTP proposers)
 * @param pendingTokens       the tokens of the step ahead that the placeholders stand for (chosen on the device and
 *                            not read back yet), or null; only for models that {@linkplain
 *                            CausalLanguageModel#acceptsPendingTokens accept them}
 */
public record ForwardBatch(int[] tokens, int[] positions, AttentionMetadata attention, int[] logitRows,
                           boolean returnHiddenStates, PendingTokens pendingTokens) {
    public ForwardBatch {
        if (positions.length != tokens.length) {
            throw new IllegalArgumentException("positions (" + positions.length + ") != tokens (" + tokens.length + ")");
        }
        if (attention.numTokens() != tokens.length) {
            throw new IllegalArgumentException("attention covers " + attention.numTokens() + " tokens, batch has " + tokens.length);
        }
        for (int r : logitRows) {
            if (r < 0 || r >= tokens.length) throw new IllegalArgumentException("logit row " + r + " outside batch");
        }
        int pendingRows = pendingTokens == null ? 0 : pendingTokens.count();
        for (int t : tokens) {
            if (t < 0 && PendingTokens.rowOf(t) >= pendingRows) {
                throw new IllegalArgumentException("token " + t + " is neither a token id nor a placeholder for one of "
                        + pendingRows + " pending tokens");
            }
        }
    }

    /** A batch whose tokens are all known. */
    public ForwardBatch(int[] tokens, int[] positions, AttentionMetadata attention, int[] logitRows,
                        boolean returnHiddenStates) {
        this(tokens, positions, attention, logitRows, returnHiddenStates, null);
    }

    /** Tokens in the batch. */
    public int numTokens() {
        return tokens.length;
    }

    /**
     * The token ids with the placeholders replaced by the pending tokens (waiting for them): for a model that needs
     * the ids on the host. The same array when there are no placeholders.
     *
     * @since 1.3
     */
    public int[] resolvedTokens() {
        return PendingTokens.resolve(tokens, pendingTokens);
    }
}
