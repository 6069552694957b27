package dev.kiln.models.deepseek;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.models.Linear;

/**
 * A SwiGLU MLP {@code down(silu(gate(x)) * up(x))}: the dense feed-forward of DeepSeek's first layers, one routed
 * expert, or the shared experts (stored as one MLP of {@code n_shared_experts × moe_intermediate_size}).
 */
record DenseMlp(Linear gate, Linear up, Linear down) {
    /** {@code out = down(silu(gate(x)) * up(x))}; gate and up are scratch of the intermediate width. */
    void apply(ComputeBackend backend, Tensor x, Tensor gateOut, Tensor upOut, Tensor out) {
        gate.apply(backend, x, gateOut);
        up.apply(backend, x, upOut);
        backend.siluAndMul(gateOut, upOut, gateOut);
        down.apply(backend, gateOut, out);
    }
}
