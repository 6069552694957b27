package dev.kiln.api.engine;

/**
 * A submitted request.
 */
public interface GenerationHandle {
    /** The request's id. */
    String id();

    /**
     * Cancels the request: within one engine step it leaves the batch, its KV blocks are freed and the listener
     * receives a final event with {@link FinishReason#CANCELLED}. Cancelling a finished request does nothing.
     */
    void cancel();

    /** Whether the request has finished (in any way). */
    boolean isDone();
}
