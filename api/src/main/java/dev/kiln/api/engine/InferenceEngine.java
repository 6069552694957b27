package dev.kiln.api.engine;

import java.util.Optional;

/**
 * Generates tokens for many concurrent requests over one loaded model. Requests join and leave the running batch
 * at every step; each receives its own stream of {@link TokenEvent}s.
 */
public interface InferenceEngine {
    /**
     * Queues a request.
     *
     * @throws EngineOverloadedException when the waiting queue is full (nothing was queued)
     * @throws IllegalArgumentException  when the request cannot be served (prompt longer than the context)
     * @throws IllegalStateException     when no model is loaded
     */
    GenerationHandle submit(GenerationRequest request, TokenListener listener);

    /** The served model, or empty while none is loaded. */
    Optional<ModelDescription> model();

    /** Current state and counters. */
    EngineStats stats();

    /**
     * Counters of every speculative proposer this engine has drafted with since it started (the active one and any
     * it was swapped away from), for metrics and the console; empty when it never speculated.
     */
    default java.util.List<dev.kiln.api.speculative.ProposerStats> speculativeStats() {
        return java.util.List.of();
    }
}
