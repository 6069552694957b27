package dev.kiln.api.attention;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.tensor.Tensor;

/**
 * Attention over a paged KV cache on one backend (service properties {@code kiln.name}, e.g. {@code paged},
 * {@code mla}, {@code sage}, and {@code kiln.backend}). One call covers a whole batch of sequences with any mix
 * of prefill chunks, single decode tokens and multi-token verification queries (see {@link AttentionMetadata}).
 */
public interface AttentionKernel {
    /** Whether this kernel can serve caches of that geometry on that backend. */
    boolean supports(KvCacheSpec spec, ComputeBackend backend);

    /** Allocates cache storage: {@code numBlocks} blocks of {@code blockSize} token slots. */
    KvCache allocate(KvCacheSpec spec, int numBlocks, int blockSize, ComputeBackend backend);

    /**
     * Writes this step's keys and values to their slots, then computes causal attention of every query token.
     *
     * @param layer  the layer index within the cache
     * @param query  {@code [T, heads * keyDim]}
     * @param key    {@code [T, kvHeads * keyDim]}: the new tokens' keys (for MLA the latent and rope key)
     * @param value  {@code [T, kvHeads * valueDim]}, or {@code null} when the spec keeps values in the keys
     * @param out    {@code [T, heads * valueDim]}
     * @param scale  the softmax scale (1/sqrt(d), or YaRN-corrected)
     * @param cache  the cache written and read
     * @param batch  where the query tokens sit
     */
    void forward(int layer, Tensor query, Tensor key, Tensor value, Tensor out, float scale, KvCache cache,
                 AttentionMetadata batch);
}
