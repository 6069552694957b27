package dev.kiln.tokenizer.bpe;

import java.util.Arrays;

/**
 * The merge rules of a BPE vocabulary: for a pair of adjacent token ids, the rank of the rule that joins them
 * (lower merges first) and the id of the joined token. Open addressing over primitive keys, because the encoder
 * looks a pair up for every adjacent pair of every word and boxing would dominate its time.
 */
final class MergeTable {
    private static final long EMPTY = -1L;

    private final long[] keys;
    private final int[] ranks;
    private final int[] mergedIds;
    private final int mask;
    private int size;

    MergeTable(int expectedRules) {
        int capacity = Integer.highestOneBit(Math.max(4, expectedRules) * 3 - 1) << 1;
        keys = new long[capacity];
        Arrays.fill(keys, EMPTY);
        ranks = new int[capacity];
        mergedIds = new int[capacity];
        mask = capacity - 1;
    }

    private static long key(int left, int right) {
        return ((long) left << 32) | (right & 0xFFFFFFFFL);
    }

    private static int hash(long key) {
        long h = key * 0x9E3779B97F4A7C15L;
        return (int) (h ^ (h >>> 29));
    }

    /** Adds a rule; a pair listed twice takes its later rank, as the reference reader (a hash map) does. */
    void put(int left, int right, int rank, int mergedId) {
        if (size * 2 >= keys.length) {
            throw new IllegalStateException("merge table is full");
        }
        long key = key(left, right);
        int slot = hash(key) & mask;
        while (keys[slot] != EMPTY) {
            if (keys[slot] == key) {
                ranks[slot] = rank;
                mergedIds[slot] = mergedId;
                return;
            }
            slot = (slot + 1) & mask;
        }
        keys[slot] = key;
        ranks[slot] = rank;
        mergedIds[slot] = mergedId;
        size++;
    }

    /** The slot of the rule joining the pair, or -1 when no rule joins it. */
    int find(int left, int right) {
        long key = key(left, right);
        int slot = hash(key) & mask;
        long k;
        while ((k = keys[slot]) != EMPTY) {
            if (k == key) {
                return slot;
            }
            slot = (slot + 1) & mask;
        }
        return -1;
    }

    int rank(int slot) {
        return ranks[slot];
    }

    int mergedId(int slot) {
        return mergedIds[slot];
    }

    int size() {
        return size;
    }
}
