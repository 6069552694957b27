package dev.kiln.models.deepseek;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.tensor.Tensor;

/** The feed-forward half of a decoder layer: adds its output for the normalised input to the residual stream. */
sealed interface FeedForward permits FeedForward.Dense, MixtureOfExperts {
    /** {@code residual += ffn(normed)} for the step's tokens. */
    void addTo(Tensor normed, Tensor residual, Activations.Step step);

    /** The dense MLP of the layers below {@code first_k_dense_replace}. */
    record Dense(ComputeBackend backend, DenseMlp mlp) implements FeedForward {
        @Override
        public void addTo(Tensor normed, Tensor residual, Activations.Step step) {
            mlp.apply(backend, normed, step.denseGate(), step.denseUp(), step.projected());
            backend.add(residual, step.projected());
        }
    }
}
