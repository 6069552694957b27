package dev.kiln.api.engine;

/**
 * Receives a request's events, on an engine thread: implementations return quickly and never block (hand the
 * event to an I/O thread). Exactly one terminal call happens: an event with a non-null finish reason, or
 * {@link #onError}.
 */
public interface TokenListener {
    /** New tokens; the last event of a sequence carries its finish reason. */
    void onTokens(TokenEvent event);

    /** The request failed; no further calls follow. */
    void onError(Throwable error);
}
