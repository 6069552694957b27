package dev.kiln.engine.kv;

import java.util.Arrays;

/**
 * The KV cache blocks of one sequence, in order: block i holds positions {@code i * blockSize ..}. Also remembers
 * how many of its leading full blocks have been hashed for the prefix cache and the hash of the last one, which
 * the next block's hash chains from.
 *
 * <p>The id array is kept exactly as long as the table, so it can be handed to a forward step as is; it grows by
 * one copy per block, i.e. once every {@code blockSize} tokens. Owned by the engine thread.
 */
public final class BlockTable {
    private static final int[] EMPTY = new int[0];

    private int[] ids = EMPTY;
    private int hashedBlocks;
    private long lastHash = PrefixHash.ROOT;

    /** Number of blocks. */
    public int size() {
        return ids.length;
    }

    /** Block id at index i. */
    public int get(int i) {
        return ids[i];
    }

    /**
     * The block ids, exactly {@link #size()} long. The array is replaced, not modified, when the table changes, so
     * a caller may keep it for the duration of one forward step; it must not write to it.
     */
    public int[] ids() {
        return ids;
    }

    /** The cache slot of a position: offset {@code position % blockSize} in its block. */
    public int slot(int position, int blockSize) {
        return ids[position / blockSize] * blockSize + position % blockSize;
    }

    /** Leading full blocks registered with (or looked up in) the prefix cache. */
    int hashedBlocks() {
        return hashedBlocks;
    }

    /** Hash of the last hashed block, {@link PrefixHash#ROOT} when none. */
    long lastHash() {
        return lastHash;
    }

    void recordHash(long hash) {
        hashedBlocks++;
        lastHash = hash;
    }

    void add(int block) {
        int[] grown = Arrays.copyOf(ids, ids.length + 1);
        grown[ids.length] = block;
        ids = grown;
    }

    /** Drops the blocks from index {@code size} on (never hashed ones: they hold no computed full block). */
    void truncate(int size) {
        if (size < hashedBlocks) throw new IllegalStateException("cannot drop hashed block " + size + " of " + hashedBlocks);
        ids = Arrays.copyOf(ids, size);
    }

    void clear() {
        ids = EMPTY;
        hashedBlocks = 0;
        lastHash = PrefixHash.ROOT;
    }

    @Override
    public String toString() {
        return Arrays.toString(ids);
    }
}
