package dev.kiln.sampler.penalties;

/**
 * A set of token ids as a bit per vocabulary entry, reused across calls: penalties that apply once per distinct
 * token mark what they have seen and clear exactly those marks afterwards, so a call costs time in the number of
 * tokens of the sequence, not in the vocabulary size.
 *
 * <p>Not thread-safe: one instance per thread.
 */
final class TokenMarks {
    private long[] bits = new long[0];

    /**
     * Marks the token; returns whether it was unmarked before.
     *
     * @throws IllegalArgumentException for a negative id
     */
    boolean mark(int token) {
        if (token < 0) throw new IllegalArgumentException("negative token id " + token);
        int word = token >>> 6;
        if (word >= bits.length) {
            long[] grown = new long[Math.max(word + 1, bits.length * 2)];
            System.arraycopy(bits, 0, grown, 0, bits.length);
            bits = grown;
        }
        long bit = 1L << token;
        boolean fresh = (bits[word] & bit) == 0;
        bits[word] |= bit;
        return fresh;
    }

    /** Clears the marks of these tokens (a superset of the marked ones leaves the set empty). */
    void clear(int[] tokens) {
        for (int t : tokens) {
            int word = t >>> 6;
            if (t >= 0 && word < bits.length) bits[word] = 0;
        }
    }
}
