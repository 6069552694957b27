package dev.kiln.api.speculative;

import java.util.List;

/**
 * Proposes draft tokens that the engine verifies in one batched target forward (service property
 * {@code kiln.name}: {@code reference}, {@code draft-model}, {@code mtp}, ...). The engine binds the active
 * proposer dynamically; a proposer replaced while serving is told to {@link #release} its sequences, and the
 * sequences continue with the next proposer (or none) from the next step.
 */
public interface SpeculativeProposer {
    /** Whether drafts need the target model's final hidden state (MTP heads do). */
    boolean needsTargetHiddenStates();

    /** Proposes drafts for a batch of sequences; the result has one draft per request, in order. */
    List<Draft> propose(List<DraftRequest> requests);

    /**
     * Tells the proposer how many of the sequence's last draft tokens were accepted, so a proposer with state
     * (a draft model's KV cache) can roll back the rest.
     */
    default void accepted(String sequenceId, int acceptedTokens) {}

    /** Forgets a finished, cancelled or migrated sequence and frees what was held for it. */
    default void release(String sequenceId) {}
}
