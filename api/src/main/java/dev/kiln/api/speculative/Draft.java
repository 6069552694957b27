package dev.kiln.api.speculative;

/**
 * Tokens proposed for one sequence, to be verified by the target model in one forward.
 *
 * @param tokens        draft tokens, possibly none
 * @param probabilities for each draft token, the proposer's probability distribution it was drawn from (a row as
 *                      wide as the target's vocabulary; for distribution-exact rejection sampling), or {@code null}
 *                      when the draft is deterministic (then a draft token has probability 1)
 */
public record Draft(int[] tokens, float[][] probabilities) {
    /** The empty draft: the sequence decodes normally this step. */
    public static final Draft NONE = new Draft(new int[0], null);

    public Draft {
        if (tokens == null) throw new IllegalArgumentException("tokens are required");
        if (probabilities != null && probabilities.length < tokens.length) {
            throw new IllegalArgumentException(tokens.length + " draft tokens but " + probabilities.length
                    + " probability rows");
        }
    }

    /** A deterministic draft (each token has probability 1 under the proposer). */
    public static Draft of(int... tokens) {
        return tokens.length == 0 ? NONE : new Draft(tokens, null);
    }
}
