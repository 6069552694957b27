package dev.kiln.api.attention;

import dev.kiln.api.tensor.DType;

/**
 * The geometry of one model's KV cache: what a token stores per layer.
 *
 * <p>For grouped-query attention each token stores {@code kvHeads} keys of {@code keyDim} and as many values of
 * {@code valueDim}. For DeepSeek's MLA a token stores one latent entry ({@code kvHeads = 1}, {@code keyDim =
 * kv_lora_rank + qk_rope_head_dim}) whose first {@code valueDim = kv_lora_rank} elements double as the value:
 * then {@link #valuesInKeys} is true and no separate value storage exists.
 *
 * @param layers       layers that keep a cache
 * @param kvHeads      key/value heads per token and layer
 * @param keyDim       elements per key head
 * @param valueDim     elements per value head
 * @param valuesInKeys whether values are the leading {@code valueDim} elements of the key entry (MLA latent)
 * @param dtype        element type stored
 */
public record KvCacheSpec(int layers, int kvHeads, int keyDim, int valueDim, boolean valuesInKeys, DType dtype) {
    /** Bytes one token occupies across all layers. */
    public long bytesPerToken() {
        long perLayer = (long) kvHeads * (keyDim + (valuesInKeys ? 0 : valueDim));
        return perLayer * layers * dtype.byteSize();
    }
}
