package dev.kiln.api.model;

import dev.kiln.api.tensor.Tensor;

/**
 * The output of one forward step. The tensors belong to the model's workspace and stay valid until its next
 * forward; read them with the backend's {@link dev.kiln.api.backend.ComputeBackend#read}.
 *
 * @param logits       {@code [logitRows, vocab]} F32, one row per requested logit row, in order
 * @param hiddenStates {@code [logitRows, hidden]} F32 final hidden states after the last norm, or {@code null}
 *                     when not requested
 */
public record ForwardResult(Tensor logits, Tensor hiddenStates) {}
