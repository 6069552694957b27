package dev.kiln.api.speculative;

/**
 * Tokens proposed for one sequence, to be verified by the target model in one forward.
 *
 * @param tokens        draft tokens, possibly none
 * @param probabilities for each draft token, the proposer's probability distribution it was drawn from (for
 *                      distribution-exact rejection sampling), or {@code null} when the draft is deterministic
 *                      (then a draft token has probability 1)
 */
public record Draft(int[] tokens, float[][] probabilities) {
    /** The empty draft: the sequence decodes normally this step. */
    public static final Draft NONE = new Draft(new int[0], null);
}
