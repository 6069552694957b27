package dev.kiln.api.model;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.api.tensor.DType;

/**
 * What a model is built with.
 *
 * @param backend        where the weights live and the operations run
 * @param attention      the attention kernel over the paged KV cache
 * @param quantizer      the weight format for the linear layers, or {@code null} to keep the checkpoint's format
 * @param maxBatchTokens the most tokens one forward step takes (sizes the workspace)
 * @param kvCacheDtype   the element type the KV cache stores, {@link DType#F32} or {@link DType#BF16}, or
 *                       {@code null} for the architecture's default ({@link DType#F32}). Keys and values are computed
 *                       in f32 either way; a {@link DType#BF16} cache rounds them when they are stored (half the
 *                       memory per token), which the attention kernel must support
 *                       ({@link AttentionKernel#supports})
 * @since 1.1
 */
public record ModelBuildOptions(ComputeBackend backend, AttentionKernel attention, Quantizer quantizer, int maxBatchTokens,
                                DType kvCacheDtype) {
    public ModelBuildOptions {
        if (backend == null || attention == null) throw new IllegalArgumentException("backend and attention are required");
        if (maxBatchTokens <= 0) throw new IllegalArgumentException("maxBatchTokens must be positive");
        if (kvCacheDtype != null && kvCacheDtype != DType.F32 && kvCacheDtype != DType.BF16) {
            throw new IllegalArgumentException("the KV cache stores F32 or BF16 elements, not " + kvCacheDtype);
        }
    }

    /** Options with the architecture's default KV cache element type. */
    public ModelBuildOptions(ComputeBackend backend, AttentionKernel attention, Quantizer quantizer, int maxBatchTokens) {
        this(backend, attention, quantizer, maxBatchTokens, null);
    }

    /**
     * The KV cache element type asked for, or {@code architectureDefault} when none was.
     *
     * @since 1.1
     */
    public DType kvCacheDtypeOr(DType architectureDefault) {
        return kvCacheDtype != null ? kvCacheDtype : architectureDefault;
    }
}
