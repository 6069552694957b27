package dev.kiln.api.model;

import dev.kiln.api.attention.AttentionMetadata;

/**
 * The input of one batched forward step: the query tokens of every scheduled sequence with their positions and
 * cache placement, and which rows need logits.
 *
 * @param tokens              the query tokens of all sequences, sequence after sequence
 * @param positions           the position of each token within its sequence
 * @param attention           where each sequence's tokens sit and which cache blocks hold its context
 * @param logitRows           indices into {@code tokens} whose next-token logits are wanted, ascending: usually the
 *                            last token of each sequence, every verified token of a speculative draft, or all
 * @param returnHiddenStates  whether the final hidden states of {@code logitRows} are also wanted (MTP proposers)
 */
public record ForwardBatch(int[] tokens, int[] positions, AttentionMetadata attention, int[] logitRows,
                           boolean returnHiddenStates) {
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
    }

    /** Tokens in the batch. */
    public int numTokens() {
        return tokens.length;
    }
}
