package dev.kiln.backend.cuda.internal;

import dev.kiln.api.attention.AttentionMetadata;
import java.util.Arrays;

/**
 * A batch's attention metadata checked against a cache and flattened into the one int array the device kernels
 * read: per token its sequence, position and slot; then every sequence's block table at a fixed stride.
 *
 * <p>The stride is the block count of the batch's context bucket (the next power of two of its longest context, at
 * least {@link #MIN_CONTEXT_BUCKET}), not of each sequence's own context: from one decode step to the next the
 * array keeps its length as long as the token count, the sequence count and the bucket stay the same, so an upload
 * into a captured graph's buffer still fits. Table entries past a sequence's context are -1 and never read.
 *
 * @param packed        {@code [sequence of token × T][position × T][slot × T][table × S, each tableStride long]}
 * @param tokens        query tokens T
 * @param sequences     sequences S
 * @param contextBucket a power of two, at least {@link #MIN_CONTEXT_BUCKET}, at least every sequence's context
 * @param tableStride   block table entries per sequence: the blocks of {@code contextBucket} tokens
 * @param oneTokenPerSequence whether every sequence has exactly one query token (a decode step, padding included):
 *                      no token's context then holds another token of the same step, so every entry but each
 *                      token's own was cached by earlier steps
 */
public record AttentionBatch(int[] packed, int tokens, int sequences, int contextBucket, int tableStride,
                             boolean oneTokenPerSequence) {
    /** The smallest context bucket: short contexts share one launch shape. */
    public static final int MIN_CONTEXT_BUCKET = 256;

    /** Offset of the per-token sequence indices in {@link #packed}. */
    public int sequenceOffset() {
        return 0;
    }

    /** Offset of the per-token positions. */
    public int positionOffset() {
        return tokens;
    }

    /** Offset of the per-token cache slots. */
    public int slotOffset() {
        return 2 * tokens;
    }

    /** Offset of the block tables: sequence s's starts {@code s * tableStride} after it. */
    public int tablesOffset() {
        return 3 * tokens;
    }

    /** The context bucket of a longest context: its next power of two, at least {@link #MIN_CONTEXT_BUCKET}. */
    public static int contextBucket(int longestContext) {
        if (longestContext <= MIN_CONTEXT_BUCKET) return MIN_CONTEXT_BUCKET;
        if (longestContext > 1 << 30) throw new IllegalArgumentException("context of " + longestContext + " tokens");
        return Integer.highestOneBit(longestContext - 1) << 1;
    }

    /**
     * Checks the metadata against a cache of {@code numBlocks} blocks of {@code blockSize} slots and packs it.
     *
     * @throws IllegalArgumentException  if the metadata is inconsistent or a context exceeds its block table
     * @throws IndexOutOfBoundsException if a block id or slot lies outside the cache
     */
    public static AttentionBatch pack(AttentionMetadata batch, int numBlocks, int blockSize) {
        int sequences = batch.numSequences();
        if (batch.queryStart().length != sequences + 1 || batch.blockTables().length != sequences) {
            throw new IllegalArgumentException("metadata for " + sequences + " sequences has " + batch.queryStart().length
                    + " query starts and " + batch.blockTables().length + " block tables");
        }
        int tokens = batch.numTokens();
        if (batch.slotMapping().length < tokens) {
            throw new IllegalArgumentException(batch.slotMapping().length + " slots for " + tokens + " tokens");
        }
        if (batch.queryStart()[0] != 0) throw new IllegalArgumentException("query starts must begin at 0");
        int longest = 0;
        boolean oneTokenEach = true;
        int[] needed = new int[sequences];
        for (int s = 0; s < sequences; s++) {
            int queryLength = batch.queryLength(s);
            int context = batch.contextLength()[s];
            if (queryLength < 0 || context < queryLength) {
                throw new IllegalArgumentException("sequence " + s + ": " + queryLength + " query tokens in a context of " + context);
            }
            oneTokenEach &= queryLength == 1;
            int[] table = batch.blockTables()[s];
            if ((long) table.length * blockSize < context) {
                throw new IllegalArgumentException("sequence " + s + ": " + table.length + " blocks cannot hold " + context + " tokens");
            }
            needed[s] = (int) (((long) context + blockSize - 1) / blockSize);
            for (int b = 0; b < needed[s]; b++) {
                if (table[b] < 0 || table[b] >= numBlocks) {
                    throw new IndexOutOfBoundsException("sequence " + s + ": block " + table[b] + " of " + numBlocks);
                }
            }
            longest = Math.max(longest, context);
        }
        int bucket = contextBucket(longest);
        int stride = Math.ceilDiv(bucket, blockSize);
        long total = 3L * tokens + (long) sequences * stride;
        if (total > Integer.MAX_VALUE - 8) throw new IllegalArgumentException("batch metadata too large: " + total);
        int[] packed = new int[(int) total];
        long capacity = (long) numBlocks * blockSize;
        int tables = 3 * tokens;
        Arrays.fill(packed, tables, packed.length, -1);
        for (int s = 0; s < sequences; s++) {
            int start = batch.queryStart()[s];
            int queryLength = batch.queryLength(s);
            int first = batch.contextLength()[s] - queryLength;
            for (int j = 0; j < queryLength; j++) {
                int t = start + j;
                packed[t] = s;
                packed[tokens + t] = first + j;
            }
            System.arraycopy(batch.blockTables()[s], 0, packed, tables + s * stride, needed[s]);
        }
        for (int t = 0; t < tokens; t++) {
            int slot = batch.slotMapping()[t];
            if (slot >= capacity) throw new IndexOutOfBoundsException("slot " + slot + " of " + capacity);
            packed[2 * tokens + t] = slot;
        }
        return new AttentionBatch(packed, tokens, sequences, bucket, stride, oneTokenEach);
    }
}
