package dev.kiln.models;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.tensor.Tensor;

/**
 * A linear layer {@code y = x · Wᵀ (+ b)}: a weight in any format and an optional bias.
 *
 * @param weight {@code [out, in]}
 * @param bias   {@code [1, out]}, or {@code null} when the layer has none
 */
public record Linear(Weight weight, Tensor bias) {
    /** {@code out = x · Wᵀ + b} for every row of x. */
    public void apply(ComputeBackend backend, Tensor x, Tensor out) {
        backend.matmul(x, weight, out);
        if (bias != null) backend.addBias(out, bias);
    }

    /** Output features. */
    public int outputs() {
        return weight.rows();
    }
}
