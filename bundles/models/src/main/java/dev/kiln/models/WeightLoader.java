package dev.kiln.models;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.api.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;

/**
 * Places a checkpoint's tensors on a backend, checking each shape against what the configuration implies, and
 * keeps what it placed so the model can report its size and release it.
 *
 * <p>Linear layers go through the {@link Quantizer} when one is configured (it reads {@code prefix.weight} and
 * whatever companion tensors its format needs), otherwise they stay in the checkpoint's floating-point format.
 * Every mismatch is refused with an {@link InvalidCheckpointException} naming the tensor, before any kernel can
 * read past the end of a weight.
 */
public final class WeightLoader implements AutoCloseable {
    private final Checkpoint checkpoint;
    private final ComputeBackend backend;
    private final Quantizer quantizer;
    private final List<Weight> weights = new ArrayList<>();
    private final List<Tensor> vectors = new ArrayList<>();
    private final List<AutoCloseable> companions = new ArrayList<>();
    private long bytes;

    /**
     * @param quantizer the format for linear layers, or {@code null} to keep the checkpoint's format
     * @throws IllegalArgumentException when the quantizer has no kernels for the backend
     */
    public WeightLoader(Checkpoint checkpoint, ComputeBackend backend, Quantizer quantizer) {
        if (quantizer != null && !quantizer.supports(backend)) {
            throw new IllegalArgumentException("quantizer '" + quantizer.name() + "' has no kernels for backend '"
                    + backend.name() + "'");
        }
        this.checkpoint = checkpoint;
        this.backend = backend;
        this.quantizer = quantizer;
    }

    /** The checkpoint read from. */
    public Checkpoint checkpoint() {
        return checkpoint;
    }

    /** Whether linear layers are converted by a quantizer. */
    public boolean quantizes() {
        return quantizer != null;
    }

    /** Whether the checkpoint stores the quantizer's format natively (false without a quantizer). */
    public boolean preQuantized() {
        return quantizer != null && quantizer.isPreQuantized(checkpoint);
    }

    /**
     * A linear layer's weight {@code [rows, columns]} ({@code out × in}) and its bias {@code prefix.bias} when the
     * checkpoint has one.
     *
     * @param requireBias whether the configuration says the layer has a bias, so that its absence is an error
     */
    public Linear linear(String prefix, int rows, int columns, boolean requireBias) {
        Weight weight = projection(prefix, rows, columns);
        Tensor bias = optionalVector(prefix + ".bias", rows, requireBias).orElse(null);
        return new Linear(weight, bias);
    }

    /**
     * A linear layer's weight {@code [rows, columns]} ({@code out × in}) named by its prefix, e.g.
     * {@code model.layers.0.self_attn.q_proj}: through the quantizer when there is one.
     */
    public Weight projection(String prefix, int rows, int columns) {
        if (quantizer == null) return dense(prefix + ".weight", rows, columns);
        // A pre-quantized format may store no "prefix.weight" at all (AWQ keeps qweight); check it when present.
        checkpoint.find(prefix + ".weight").ifPresent(t -> requireShape(t, rows, columns));
        Weight weight = quantizer.load(checkpoint, prefix, backend);
        return keep(prefix + ".weight", weight, rows, columns);
    }

    /** A matrix kept in the checkpoint's floating-point format (an embedding table, an unquantized head). */
    public Weight dense(String name, int rows, int columns) {
        CheckpointTensor tensor = checkpoint.tensor(name);
        requireShape(tensor, rows, columns);
        Weight weight;
        try {
            weight = backend.denseWeight(tensor);
        } catch (IllegalArgumentException e) {
            throw new InvalidCheckpointException(tensor.file(), name, e.getMessage(), e);
        }
        return keep(name, weight, rows, columns);
    }

    /** A vector of {@code length} elements (a norm's scale, a bias) as an F32 tensor {@code [1, length]}. */
    public Tensor vector(String name, int length) {
        CheckpointTensor tensor = checkpoint.tensor(name);
        requireShape(tensor, length);
        Tensor vector;
        try {
            vector = backend.vector(tensor);
        } catch (IllegalArgumentException e) {
            throw new InvalidCheckpointException(tensor.file(), name, e.getMessage(), e);
        }
        vectors.add(vector);
        bytes += (long) length * Float.BYTES;
        return vector;
    }

    /** The vector if the checkpoint has it, or when {@code required}, refuses its absence. */
    public Optional<Tensor> optionalVector(String name, int length, boolean required) {
        if (!required && checkpoint.find(name).isEmpty()) return Optional.empty();
        return Optional.of(vector(name, length));
    }

    /**
     * Keeps something made from placed weights (a backend's routed-experts path, which holds their addresses) until
     * {@link #close}, which releases it before the weights.
     */
    public <T extends AutoCloseable> T own(T companion) {
        companions.add(companion);
        return companion;
    }

    /** Bytes of everything placed so far, in storage formats. */
    public long bytes() {
        return bytes;
    }

    /** Releases every companion, weight and vector placed (not the checkpoint). */
    @Override
    public void close() {
        RuntimeException failure = null;
        for (AutoCloseable c : companions) {
            try {
                c.close();
            } catch (Exception e) {
                if (failure == null) failure = new IllegalStateException("releasing " + c + " failed", e);
            }
        }
        companions.clear();
        for (Weight w : weights) {
            try {
                w.close();
            } catch (Exception e) {
                if (failure == null) failure = new IllegalStateException("releasing weights failed", e);
            }
        }
        for (Tensor t : vectors) {
            try {
                t.close();
            } catch (RuntimeException e) {
                if (failure == null) failure = e;
            }
        }
        weights.clear();
        vectors.clear();
        if (failure != null) throw failure;
    }

    private Weight keep(String name, Weight weight, int rows, int columns) {
        weights.add(weight);
        if (weight.rows() != rows || weight.columns() != columns) {
            throw new InvalidCheckpointException(checkpoint.location(), name, "loaded as [" + weight.rows() + ", "
                    + weight.columns() + "], the configuration implies [" + rows + ", " + columns + "]");
        }
        bytes += weight.bytes();
        return weight;
    }

    private static void requireShape(CheckpointTensor tensor, long... expected) {
        if (!Arrays.equals(tensor.shape(), expected)) {
            throw new InvalidCheckpointException(tensor.file(), tensor.name(), "has shape "
                    + Arrays.toString(tensor.shape()) + ", the configuration implies " + Arrays.toString(expected));
        }
    }
}
