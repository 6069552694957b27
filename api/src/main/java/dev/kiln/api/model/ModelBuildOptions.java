package dev.kiln.api.model;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.quant.Quantizer;

/**
 * What a model is built with.
 *
 * @param backend        where the weights live and the operations run
 * @param attention      the attention kernel over the paged KV cache
 * @param quantizer      the weight format for the linear layers, or {@code null} to keep the checkpoint's format
 * @param maxBatchTokens the most tokens one forward step takes (sizes the workspace)
 */
public record ModelBuildOptions(ComputeBackend backend, AttentionKernel attention, Quantizer quantizer, int maxBatchTokens) {
    public ModelBuildOptions {
        if (backend == null || attention == null) throw new IllegalArgumentException("backend and attention are required");
        if (maxBatchTokens <= 0) throw new IllegalArgumentException("maxBatchTokens must be positive");
    }
}
