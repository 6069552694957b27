package dev.kiln.api.tokenizer;

/**
 * Turns a stream of token ids into a stream of text, emitting only complete characters: a UTF-8 sequence split
 * across tokens is held back until it is whole, so streamed text never contains a broken character. Not
 * thread-safe; one per sequence.
 */
public interface IncrementalDetokenizer {
    /** Adds one token and returns the text that became final (possibly empty). */
    String add(int tokenId);

    /** Returns whatever is still held back at the end of the sequence (invalid bytes as U+FFFD). */
    String flush();
}
