package dev.kiln.api.speculative;

import dev.kiln.api.model.CausalLanguageModel;

/**
 * A way of proposing draft tokens that the engine verifies in one batched target forward (service property
 * {@code kiln.name}: {@code reference}, {@code draft-model}, {@code mtp}, ...).
 *
 * <p>The service itself keeps no sequences: the engine {@link #open opens} a {@link DraftSession} for its target
 * model when it selects the proposer, drafts through that session from its engine thread, and closes it when it
 * selects another proposer (or none), when its model is unloaded, or before the service goes away. Several engines
 * (or successive models of one engine) each have their own session.
 */
public interface SpeculativeProposer {
    /**
     * Starts drafting for a target model. Called outside the engine thread; may take time (a draft model is
     * loaded, a cache allocated), but should not wait for anything the engine thread holds.
     *
     * @throws IllegalArgumentException when this proposer cannot serve the target (no MTP module, another
     *                                  vocabulary, ...); the engine then runs without speculation and says why
     */
    DraftSession open(CausalLanguageModel target);
}
