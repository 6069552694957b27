package dev.kiln.models.deepseek;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;

/**
 * Plain multi-head attention over keys and values expanded from the latent for one step only (MLA's "naive"
 * path), for batches whose sequences all start from an empty context, so that the step's own tokens are the whole
 * context. The expanded keys and values go into a scratch cache of this object, used by the model's attention
 * kernel like any cache and overwritten by the next step; nothing expanded is kept.
 */
final class ExpandedAttention implements AutoCloseable {
    private static final int BLOCK_SIZE = 16;

    private final AttentionKernel kernel;
    private final ComputeBackend backend;
    private final KvCacheSpec spec;
    private KvCache scratch;

    /**
     * @param dtype the element type of the scratch cache: the model's cache type, so that the expanded path rounds
     *              keys and values as the absorbed path's cache does
     */
    ExpandedAttention(AttentionKernel kernel, ComputeBackend backend, DeepSeekConfig c, DType dtype) {
        this.kernel = kernel;
        this.backend = backend;
        this.spec = new KvCacheSpec(1, c.heads(), c.queryHeadDim(), c.valueHeadDim(), false, dtype);
    }

    /** Whether the model's kernel can attend over expanded heads at all. */
    boolean available() {
        return kernel.supports(spec, backend);
    }

    /** Whether every sequence of the batch starts at position 0 (its context is exactly its query tokens). */
    static boolean startsFromEmptyContexts(AttentionMetadata batch) {
        for (int s = 0; s < batch.numSequences(); s++) {
            if (batch.contextLength()[s] != batch.queryLength(s)) return false;
        }
        return true;
    }

    /**
     * Causal attention of each sequence's queries over its own expanded keys and values.
     *
     * @param query {@code [T, heads × (nope + rope)]}
     * @param key   {@code [T, heads × (nope + rope)]}
     * @param value {@code [T, heads × value]}
     * @param out   {@code [T, heads × value]}
     */
    void attend(Tensor query, Tensor key, Tensor value, Tensor out, float scale, AttentionMetadata batch) {
        int sequences = batch.numSequences();
        int[][] tables = new int[sequences][];
        int[] slots = new int[batch.numTokens()];
        int nextBlock = 0;
        for (int s = 0; s < sequences; s++) {
            int length = batch.queryLength(s);
            int blocks = (length + BLOCK_SIZE - 1) / BLOCK_SIZE;
            tables[s] = new int[blocks];
            for (int b = 0; b < blocks; b++) tables[s][b] = nextBlock + b;
            for (int j = 0; j < length; j++) slots[batch.queryStart()[s] + j] = nextBlock * BLOCK_SIZE + j;
            nextBlock += blocks;
        }
        KvCache cache = scratchOf(nextBlock);
        var layout = new AttentionMetadata(batch.queryStart(), batch.contextLength(), tables, slots);
        kernel.forward(0, query, key, value, out, scale, cache, layout);
    }

    /** The scratch cache, grown (never shrunk) to at least {@code blocks} blocks. */
    private KvCache scratchOf(int blocks) {
        if (scratch == null || scratch.numBlocks() < blocks) {
            int capacity = Math.max(blocks, scratch == null ? 0 : 2 * scratch.numBlocks());
            if (scratch != null) scratch.close();
            scratch = null;
            scratch = kernel.allocate(spec, capacity, BLOCK_SIZE, backend);
        }
        return scratch;
    }

    @Override
    public void close() {
        if (scratch != null) scratch.close();
        scratch = null;
    }
}
