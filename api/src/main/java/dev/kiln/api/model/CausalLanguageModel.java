package dev.kiln.api.model;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.ComputeBackend;

/**
 * A loaded decoder-only language model on one backend, ready to run batched forward steps over a paged KV cache.
 * Not thread-safe: the engine runs one forward at a time and owns the cache.
 */
public interface CausalLanguageModel extends AutoCloseable {
    /** The configuration it was built from. */
    ModelConfig config();

    /** The architecture's name ({@code qwen2}, {@code llama}, {@code deepseek_v3}, ...). */
    String architecture();

    /** The backend its weights live on. */
    ComputeBackend backend();

    /** Vocabulary size: the width of a logits row. */
    int vocabSize();

    /** Width of a hidden state. */
    int hiddenSize();

    /** Bytes of weights held, in their storage formats. */
    long weightBytes();

    /**
     * Bytes of weights one decoded token reads, in their storage formats: all of {@link #weightBytes()} by default; a
     * mixture of experts leaves out the routed experts a token does not choose (on average). The embedding table is
     * counted whole, though a token reads one row of it: what a bandwidth bound subtracts is the caller's choice.
     *
     * @since 1.2
     */
    default long weightBytesPerToken() {
        return weightBytes();
    }

    /** What one token stores in the KV cache. */
    KvCacheSpec kvCacheSpec();

    /** Allocates a KV cache for this model with its attention kernel. */
    KvCache allocateKvCache(int numBlocks, int blockSize);

    /**
     * Runs one forward step: writes the batch's keys and values into the cache and returns the requested logits.
     *
     * @throws IllegalArgumentException when the batch exceeds {@link #maxBatchTokens()} or references slots the
     *                                  cache does not have
     */
    ForwardResult forward(ForwardBatch batch, KvCache cache);

    /**
     * Whether {@link #forward} accepts a batch with {@linkplain ForwardBatch#pendingTokens pending tokens}, passing
     * them to {@link ComputeBackend#embed(dev.kiln.api.backend.Weight, int[], dev.kiln.api.backend.PendingTokens,
     * dev.kiln.api.tensor.Tensor)} rather than reading the ids on the host. False by default: an engine then gives
     * the model known tokens only.
     *
     * @since 1.3
     */
    default boolean acceptsPendingTokens() {
        return false;
    }

    /** The most tokens one forward accepts (the workspace's size); larger prompts are chunked by the caller. */
    int maxBatchTokens();

    /** Releases the weights and workspace; the checkpoint is closed too if the model owns it. */
    @Override
    void close();
}
