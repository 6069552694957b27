package dev.kiln.api.engine;

/**
 * The engine's waiting queue is full: the request was not accepted and nothing was done for it. Servers answer
 * with HTTP 429 (or 503) so the client can retry.
 */
public class EngineOverloadedException extends RuntimeException {
    public EngineOverloadedException(String message) {
        super(message);
    }
}
