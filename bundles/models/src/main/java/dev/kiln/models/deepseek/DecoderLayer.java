package dev.kiln.models.deepseek;

import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.tensor.Tensor;

/**
 * One pre-norm decoder layer: {@code x += MLA(rmsNorm(x)); x += FFN(rmsNorm(x))}, the FFN dense or DeepSeekMoE.
 * The main model's layers and the MTP module's block are the same.
 */
record DecoderLayer(ComputeBackend backend, float eps, Tensor inputNorm, LatentAttention attention,
                    Tensor postAttentionNorm, FeedForward ffn) {

    /** Runs the layer on {@code step.residual()} in place, caching its latents in layer {@code cacheLayer}. */
    void forward(Activations.Step step, int[] positions, KvCache cache, int cacheLayer, AttentionMetadata batch,
                 boolean expand) {
        Tensor x = step.residual();
        Tensor h = step.normed();
        backend.rmsNorm(x, inputNorm, eps, h);
        attention.forward(h, step, positions, cache, cacheLayer, batch, expand);
        backend.add(x, step.projected());
        backend.rmsNorm(x, postAttentionNorm, eps, h);
        ffn.addTo(h, x, step);
    }
}
