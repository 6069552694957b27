package dev.kiln.backend.cuda.internal;

import dev.kiln.api.attention.AttentionMetadata;

/**
 * A batch's attention metadata checked against a cache and flattened into the one int array the device kernels
 * read: per token its sequence, position and slot; per sequence the start of its block table; the tables.
 *
 * @param packed         {@code [sequence of token × T][position × T][slot × T][table start × S][tables...]}
 * @param tokens         query tokens T
 * @param sequences      sequences S
 */
public record AttentionBatch(int[] packed, int tokens, int sequences) {
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

    /** Offset of the per-sequence block table starts (relative to {@link #tablesOffset()}). */
    public int tableStartOffset() {
        return 3 * tokens;
    }

    /** Offset of the concatenated block tables. */
    public int tablesOffset() {
        return 3 * tokens + sequences;
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
        long tableEntries = 0;
        int[] needed = new int[sequences];
        for (int s = 0; s < sequences; s++) {
            int queryLength = batch.queryLength(s);
            int context = batch.contextLength()[s];
            if (queryLength < 0 || context < queryLength) {
                throw new IllegalArgumentException("sequence " + s + ": " + queryLength + " query tokens in a context of " + context);
            }
            int[] table = batch.blockTables()[s];
            if ((long) table.length * blockSize < context) {
                throw new IllegalArgumentException("sequence " + s + ": " + table.length + " blocks cannot hold " + context + " tokens");
            }
            needed[s] = (context + blockSize - 1) / blockSize;
            for (int b = 0; b < needed[s]; b++) {
                if (table[b] < 0 || table[b] >= numBlocks) {
                    throw new IndexOutOfBoundsException("sequence " + s + ": block " + table[b] + " of " + numBlocks);
                }
            }
            tableEntries += needed[s];
        }
        long total = 3L * tokens + sequences + tableEntries;
        if (total > Integer.MAX_VALUE - 8) throw new IllegalArgumentException("batch metadata too large: " + total);
        int[] packed = new int[(int) total];
        long capacity = (long) numBlocks * blockSize;
        int tablePos = 3 * tokens + sequences;
        for (int s = 0; s < sequences; s++) {
            int start = batch.queryStart()[s];
            int queryLength = batch.queryLength(s);
            int first = batch.contextLength()[s] - queryLength;
            for (int j = 0; j < queryLength; j++) {
                int t = start + j;
                packed[t] = s;
                packed[tokens + t] = first + j;
            }
            packed[3 * tokens + s] = tablePos - (3 * tokens + sequences);
            System.arraycopy(batch.blockTables()[s], 0, packed, tablePos, needed[s]);
            tablePos += needed[s];
        }
        for (int t = 0; t < tokens; t++) {
            int slot = batch.slotMapping()[t];
            if (slot >= capacity) throw new IndexOutOfBoundsException("slot " + slot + " of " + capacity);
            packed[2 * tokens + t] = slot;
        }
        return new AttentionBatch(packed, tokens, sequences);
    }
}
