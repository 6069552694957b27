package dev.kiln.api.attention;

/**
 * Storage for a paged KV cache: {@link #numBlocks()} blocks of {@link #blockSize()} token slots, each slot holding
 * one token's keys and values for every layer. Which blocks belong to which sequence is decided by the engine's
 * block manager and passed to each forward in {@link AttentionMetadata}; the cache itself knows no sequences.
 * Slot {@code s} is offset {@code s % blockSize} of block {@code s / blockSize}.
 */
public interface KvCache extends AutoCloseable {
    /** The geometry. */
    KvCacheSpec spec();

    /** Token slots per block. */
    int blockSize();

    /** Number of blocks. */
    int numBlocks();

    /** Bytes of storage held. */
    long bytes();

    /**
     * Copies the contents of whole blocks (copy-on-write for shared prefixes, or compaction).
     *
     * @param from source block ids
     * @param to   destination block ids, same length
     */
    void copyBlocks(int[] from, int[] to);

    @Override
    void close();
}
