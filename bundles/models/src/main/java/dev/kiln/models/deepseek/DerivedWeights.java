package dev.kiln.models.deepseek;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Weights the model computes at load time rather than reads from the checkpoint (MLA's per-head absorption
 * matrices): their values are written into memory this object owns and handed to the backend as if they were
 * checkpoint tensors, so they run on the backend's own dense kernels.
 *
 * <p>A matrix whose values are all exactly representable in bf16 (everything derived from a bf16 checkpoint) is
 * stored as bf16; anything else (values dequantized from FP8 blocks) as f32, so that no value is rounded.
 */
final class DerivedWeights implements AutoCloseable {
    private static final ValueLayout.OfShort BF16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final ComputeBackend backend;
    private final Path origin;
    private final Arena arena = Arena.ofShared();
    private final List<Weight> weights = new ArrayList<>();
    private long bytes;

    /** @param origin the checkpoint the values derive from, named in error messages */
    DerivedWeights(ComputeBackend backend, Path origin) {
        this.backend = backend;
        this.origin = origin;
    }

    /**
     * Reads a weight's matrix {@code [rows, columns]} through its own kernel, whatever its format: the identity
     * times {@code Wᵀ} gives {@code Wᵀ} exactly (each output is one product with 1 plus zeros). Returned as
     * {@code Wᵀ}, row-major {@code [columns, rows]}.
     */
    float[] transposedValues(Weight weight) {
        int n = weight.columns();
        float[] identity = new float[n * n];
        for (int i = 0; i < n; i++) identity[i * n + i] = 1f;
        try (Tensor in = backend.allocate(DType.F32, n, n); Tensor out = backend.allocate(DType.F32, n, weight.rows())) {
            backend.write(identity, in);
            backend.matmul(in, weight, out);
            return backend.read(out);
        }
    }

    /** A dense weight {@code [rows, columns]} holding {@code values} (row-major), named for error messages. */
    Weight dense(String name, float[] values, int rows, int columns) {
        boolean bf16Exact = true;
        for (float v : values) {
            if ((Float.floatToRawIntBits(v) & 0xFFFF) != 0) {
                bf16Exact = false;
                break;
            }
        }
        MemorySegment data;
        if (bf16Exact) {
            data = arena.allocate(2L * values.length, 8);
            for (int i = 0; i < values.length; i++) data.setAtIndex(BF16, i, (short) (Float.floatToRawIntBits(values[i]) >>> 16));
        } else {
            data = arena.allocate(4L * values.length, 8);
            MemorySegment.copy(values, 0, data, F32, 0, values.length);
        }
        var tensor = new CheckpointTensor(name, bf16Exact ? DType.BF16 : DType.F32, new long[] {rows, columns}, data, origin);
        Weight weight = backend.denseWeight(tensor);
        weights.add(weight);
        bytes += weight.bytes();
        return weight;
    }

    /** Bytes of the derived weights in their storage formats. */
    long bytes() {
        return bytes;
    }

    /** Releases the weights and their memory. */
    @Override
    public void close() {
        RuntimeException failure = null;
        for (Weight w : weights) {
            try {
                w.close();
            } catch (Exception e) {
                if (failure == null) failure = new IllegalStateException("releasing derived weights failed", e);
            }
        }
        weights.clear();
        arena.close();
        if (failure != null) throw failure;
    }
}
