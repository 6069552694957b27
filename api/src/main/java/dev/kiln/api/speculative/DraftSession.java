package dev.kiln.api.speculative;

import java.util.List;

/**
 * One engine's use of a {@link SpeculativeProposer} for one target model: the per-sequence state a proposer keeps
 * (a draft model's or an MTP module's KV cache, what it has seen of each sequence).
 *
 * <p>The engine calls every method from one thread at a time, never concurrently, and nothing after
 * {@link #close()}. A session must tolerate any history: a sequence it has never seen, a sequence whose tokens no
 * longer extend what it saw (rejected drafts, preemption), a sequence it was told to release coming back. Drafts
 * only ever cost speed: the engine verifies every draft token against the target model.
 */
public interface DraftSession extends AutoCloseable {
    /**
     * Whether drafts need the target model's final hidden states (MTP modules do). The engine then asks its model
     * for the hidden states of every token it computes and passes them in {@link DraftRequest#targetHidden()},
     * also while a prompt is being prefilled (requests of {@code maxTokens} 0).
     */
    boolean needsTargetHiddenStates();

    /**
     * Proposes drafts for a batch of sequences; the result has one draft per request, in order. A request with
     * {@code maxTokens} 0 only tells the session what the target computed (its draft is ignored).
     */
    List<Draft> propose(List<DraftRequest> requests);

    /**
     * Tells the session how many of the sequence's last draft tokens the target accepted, so that a session with
     * state can roll back the rest before the next {@link #propose}.
     */
    default void accepted(String sequenceId, int acceptedTokens) {}

    /** Forgets a finished, cancelled or preempted sequence and frees what was held for it. */
    default void release(String sequenceId) {}

    /** Frees everything the session holds. */
    @Override
    void close();
}
