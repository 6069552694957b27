package dev.kiln.api.backend;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;

/**
 * A device that executes the primitive operations models are written against (service property
 * {@code kiln.name}: {@code cpu}, {@code cuda}, ...). A model architecture is written once against this
 * interface and runs on every backend.
 *
 * <p>Activations are 2-D tensors {@code [tokens, features]} of {@link DType#F32} unless stated otherwise. The
 * operations act on the rows present in their arguments, so the same workspace serves batches of any size up to
 * its capacity (see {@link Tensor#rows}). Calls are issued from one thread per model forward; a backend may run
 * them asynchronously (a GPU stream) as long as {@link #read} returns the values after all prior operations.
 */
public interface ComputeBackend {
    /** The backend's name, equal to its {@code kiln.name} service property. */
    String name();

    /** What the backend runs on, for logs, stats and the console. */
    DeviceInfo device();

    /** Allocates an uninitialised tensor in this backend's memory. */
    Tensor allocate(DType dtype, long... shape);

    /** Copies host values into an F32 tensor, starting at its first element. */
    void write(float[] source, Tensor destination);

    /** Copies an F32 tensor's values (all of its rows) to the host. */
    float[] read(Tensor source);

    /**
     * Places a 2-D checkpoint tensor {@code [rows, columns]} as a weight in its stored floating-point format
     * (F32, F16 or BF16). A CPU backend keeps it memory-mapped; a GPU backend copies it to the device once.
     *
     * @throws IllegalArgumentException if the tensor is not 2-D or not F32/F16/BF16
     */
    Weight denseWeight(CheckpointTensor tensor);

    /** Converts a 1-D checkpoint tensor (a norm's scale, a bias) to an F32 tensor of shape {@code [1, n]}. */
    Tensor vector(CheckpointTensor tensor);

    /** {@code out[t] = table[ids[t]]}: embedding lookup. */
    void embed(Weight table, int[] ids, Tensor out);

    /** {@code out = x · weightᵀ} for every row of x: the weight's own kernel (dense or quantized) does the work. */
    default void matmul(Tensor x, Weight weight, Tensor out) {
        weight.multiply(x, out);
    }

    /** {@code x[t] += bias} for every row t, bias of shape {@code [1, n]}. */
    void addBias(Tensor x, Tensor bias);

    /** {@code out[t] = x[t] / sqrt(mean(x[t]²) + eps) * scale}; out may be x. */
    void rmsNorm(Tensor x, Tensor scale, float eps, Tensor out);

    /** {@code accumulator += x}, element-wise (the residual connection). */
    void add(Tensor accumulator, Tensor x);

    /** {@code out = silu(gate) * up}, element-wise; out may be gate. */
    void siluAndMul(Tensor gate, Tensor up, Tensor out);

    /**
     * Creates a rotary position embedding with the given inverse frequencies (one per rotated pair, after any
     * scaling such as llama3 or YaRN has been applied by the architecture).
     *
     * @param inverseFrequencies  {@code rotaryDim / 2} frequencies
     * @param magnitude           factor applied to cos and sin (YaRN's attention factor; 1 otherwise)
     * @param layout              which elements of a head form a rotated pair
     */
    RotaryEmbedding rotaryEmbedding(float[] inverseFrequencies, float magnitude, RotaryEmbedding.Layout layout);

    /**
     * Releases what the backend holds (thread pools, contexts). Weights and tensors it made are invalid after.
     */
    default void shutdown() {}
}
