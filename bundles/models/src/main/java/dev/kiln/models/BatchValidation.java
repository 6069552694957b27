package dev.kiln.models;

import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.model.ForwardBatch;

/**
 * The checks every model runs on a forward batch before any kernel sees it, so that a wrong token id, slot or
 * block table is refused with a message instead of reading or writing outside a table or the cache.
 */
public final class BatchValidation {
    private BatchValidation() {}

    /**
     * Refuses a batch that would overflow the workspace, the vocabulary or the cache.
     *
     * @throws IllegalArgumentException naming the offending token, slot, block or sequence
     */
    public static void check(ForwardBatch batch, KvCache cache, int maxBatchTokens, int vocabSize) {
        int tokens = batch.numTokens();
        if (tokens == 0 || tokens > maxBatchTokens) {
            throw new IllegalArgumentException("a batch takes 1.." + maxBatchTokens + " tokens, found " + tokens);
        }
        for (int t : batch.tokens()) { // a negative id is a placeholder, checked against the pending tokens by the batch
            if (t >= vocabSize) {
                throw new IllegalArgumentException("token " + t + " outside the vocabulary of " + vocabSize);
            }
        }
        AttentionMetadata meta = batch.attention();
        int blocks = cache.numBlocks();
        long slots = (long) blocks * cache.blockSize();
        for (int slot : meta.slotMapping()) {
            if (slot < -1 || slot >= slots) { // -1: a padding token, nothing stored
                throw new IllegalArgumentException("slot " + slot + " outside the cache's " + slots + " slots");
            }
        }
        for (int s = 0; s < meta.numSequences(); s++) {
            int[] table = meta.blockTables()[s];
            if ((long) table.length * cache.blockSize() < meta.contextLength()[s]) {
                throw new IllegalArgumentException("sequence " + s + " has " + meta.contextLength()[s]
                        + " tokens of context but " + table.length + " blocks of " + cache.blockSize());
            }
            for (int block : table) {
                if (block < 0 || block >= blocks) {
                    throw new IllegalArgumentException("block " + block + " outside the cache's " + blocks + " blocks");
                }
            }
        }
    }
}
