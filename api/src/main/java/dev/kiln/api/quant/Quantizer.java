package dev.kiln.api.quant;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;

/**
 * A weight format for linear layers (service property {@code kiln.name}: {@code weight_only_int8},
 * {@code weight_only_int4}, {@code fp8}, {@code awq}, ...). It either quantizes a floating-point checkpoint
 * tensor on load or reads a tensor already quantized in the checkpoint (with its scales), and supplies the
 * format's matmul kernels for the backends it supports.
 */
public interface Quantizer {
    /** The format's name, equal to its {@code kiln.name}. */
    String name();

    /** Whether this format has kernels for that backend. */
    boolean supports(ComputeBackend backend);

    /**
     * Whether the checkpoint stores this format natively (e.g. FP8 block scales, AWQ {@code qweight}), judged from
     * its {@code quantization_config}.
     */
    boolean isPreQuantized(Checkpoint checkpoint);

    /**
     * Produces the linear layer's weight {@code [out, in]} in this format on the backend.
     *
     * @param checkpoint the open checkpoint
     * @param prefix     the layer's name without the suffix, e.g. {@code model.layers.0.mlp.down_proj}; the
     *                   quantizer reads {@code prefix.weight} and whatever companion tensors its format needs
     * @throws dev.kiln.api.checkpoint.InvalidCheckpointException when tensors are missing or inconsistent
     */
    Weight load(Checkpoint checkpoint, String prefix, ComputeBackend backend);
}
