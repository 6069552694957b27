package dev.kiln.server.structured;

import dev.kiln.api.tokenizer.Tokenizer;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.WeakHashMap;
import java.util.function.Supplier;

/**
 * Each token's bytes and whether it is special, taken from a tokenizer once (a vocabulary of 150,000 tokens takes a
 * few megabytes and a fraction of a second) and kept while the tokenizer is in use.
 */
final class VocabularyBytes {
    private static final Map<Tokenizer, VocabularyBytes> CACHE = new WeakHashMap<>();
    /** Masks kept per vocabulary, of all grammars together: each is a bit per token (16 KB for 129,280 tokens). */
    static final int MAX_MASKS = 256;

    private final byte[][] bytes;
    private final boolean[] special;
    /** Whether the token's bytes can only continue a string's text: none is a quote, a backslash or a control byte. */
    private final boolean[] plainText;
    /**
     * Each token's first and second byte (0..255), -1 where it has none: kept apart from the tokens' arrays so that
     * refusing most of a vocabulary reads two sequential arrays rather than 100,000 scattered ones.
     */
    private final short[] first;
    private final short[] second;
    /** The tokens that fit in each recently seen recognizer state, the least recently used dropped first. */
    private final Map<State, long[]> masks = new LinkedHashMap<>(64, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<State, long[]> eldest) {
            return size() > MAX_MASKS;
        }
    };

    /** A grammar (a compiled schema, equal only to itself, or JSON mode's constant) and a point in its text. */
    private record State(Object grammar, Object point) {}

    private VocabularyBytes(Tokenizer tokenizer) {
        int n = tokenizer.vocabSize();
        bytes = new byte[n][];
        special = new boolean[n];
        plainText = new boolean[n];
        first = new short[n];
        second = new short[n];
        for (int id = 0; id < n; id++) {
            special[id] = tokenizer.isSpecial(id);
            try {
                bytes[id] = tokenizer.tokenBytes(id);
            } catch (IllegalArgumentException gap) {
                bytes[id] = null; // an id the vocabulary skips: never allowed
            }
            plainText[id] = bytes[id] != null && bytes[id].length > 0 && isPlainText(bytes[id]);
            first[id] = (short) (bytes[id] != null && bytes[id].length > 0 ? bytes[id][0] & 0xFF : -1);
            second[id] = (short) (bytes[id] != null && bytes[id].length > 1 ? bytes[id][1] & 0xFF : -1);
        }
    }

    /**
     * The mask of the tokens that fit at a point of a grammar's text ({@link Recognizer#stateKey}): the one kept for
     * it, or {@code compute}'s (run outside the lock: requests elsewhere do not wait for it), then kept.
     */
    long[] mask(Object grammar, Object point, Supplier<long[]> compute) {
        State state = new State(grammar, point);
        synchronized (masks) {
            long[] kept = masks.get(state);
            if (kept != null) return kept;
        }
        long[] computed = compute.get();
        synchronized (masks) {
            masks.put(state, computed);
        }
        return computed;
    }

    /** Drops the kept masks (for measuring what computing one costs). */
    void forgetMasks() {
        synchronized (masks) {
            masks.clear();
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

    /** The token's first byte, -1 when it has none (an empty token, or an id the vocabulary skips). */
    int firstByte(int id) {
        return id < first.length ? first[id] : -1;
    }

    /** The token's second byte, -1 when it is shorter. */
    int secondByte(int id) {
        return id < second.length ? second[id] : -1;
    }

    /** See {@link JsonPrefix#inPlainString}: such a token then fits, and leaves the state as it was. */
    boolean isPlainText(int id) {
        return id < plainText.length && plainText[id];
    }

    private static boolean isPlainText(byte[] token) {
        for (byte b : token) {
            int c = b & 0xFF;
            if (c < 0x20 || c == '"' || c == '\\') return false;
        }
        return true;
    }

    boolean isSpecial(int id) {
        return id < special.length && special[id];
    }
}
