package dev.kiln.api.engine;

/** Why a sequence ended, with the OpenAI API's names where one exists. */
public enum FinishReason {
    /** A stop token (or, at the server, a stop string) was produced. */
    STOP,
    /** {@code max_tokens} or the model's context length was reached. */
    LENGTH,
    /** The caller cancelled (a client disconnect, a timeout). */
    CANCELLED,
    /** The engine failed the request; the listener's {@code onError} carries the cause. */
    ERROR
}
