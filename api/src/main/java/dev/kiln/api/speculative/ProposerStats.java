package dev.kiln.api.speculative;

/**
 * What one proposer achieved since the engine started.
 *
 * @param name           the proposer's {@code kiln.name}
 * @param drafts         verification steps of a sequence with at least one draft token
 * @param draftTokens    draft tokens verified
 * @param acceptedTokens of those, tokens the target accepted
 */
public record ProposerStats(String name, long drafts, long draftTokens, long acceptedTokens) {
    /** Accepted tokens per verified draft token, 0 before any draft. */
    public double acceptanceRate() {
        return draftTokens == 0 ? 0 : (double) acceptedTokens / draftTokens;
    }

    /**
     * Tokens a sequence gains per verification step: the accepted draft tokens plus the one the target adds (the
     * correction, or the token after a fully accepted draft); 0 before any draft.
     */
    public double meanAcceptedLength() {
        return drafts == 0 ? 0 : 1 + (double) acceptedTokens / drafts;
    }
}
