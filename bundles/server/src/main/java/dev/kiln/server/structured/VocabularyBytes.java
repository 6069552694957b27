package dev.kiln.server.structured;

import dev.kiln.api.tokenizer.Tokenizer;
import java.util.Map;
import java.util.WeakHashMap;

/**
 * Each token's bytes and whether it is special, taken from a tokenizer once (a vocabulary of 150,000 tokens takes a
 * few megabytes and a fraction of a second) and kept while the tokenizer is in use.
 */
final class VocabularyBytes {
    private static final Map<Tokenizer, VocabularyBytes> CACHE = new WeakHashMap<>();

    private final byte[][] bytes;
    private final boolean[] special;

    private VocabularyBytes(Tokenizer tokenizer) {
        int n = tokenizer.vocabSize();
        bytes = new byte[n][];
        special = new boolean[n];
        for (int id = 0; id < n; id++) {
            special[id] = tokenizer.isSpecial(id);
            try {
                bytes[id] = tokenizer.tokenBytes(id);
            } catch (IllegalArgumentException gap) {
                bytes[id] = null; // an id the vocabulary skips: never allowed
            }
        }
    }

    static VocabularyBytes of(Tokenizer tokenizer) {
        synchronized (CACHE) {
            return CACHE.computeIfAbsent(tokenizer, VocabularyBytes::new);
        }
    }

    int size() {
        return bytes.length;
    }

    /** The token's bytes, or null for an id outside the vocabulary. */
    byte[] bytes(int id) {
        return id < bytes.length ? bytes[id] : null;
    }

    boolean isSpecial(int id) {
        return id < special.length && special[id];
    }
}
