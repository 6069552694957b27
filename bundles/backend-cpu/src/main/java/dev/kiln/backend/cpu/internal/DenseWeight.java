package dev.kiln.backend.cpu.internal;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cpu.CpuTensor;
import dev.kiln.backend.cpu.WorkerPool;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * A floating-point weight read in place from its checkpoint bytes (memory-mapped, never copied to the heap).
 * Each storage format supplies two kernels: a streaming one for few activation rows (decode reads every weight
 * byte once per step, so it is bound by memory bandwidth) and the row widening used by the cache-blocked
 * {@link Gemm} for many rows (prefill, where each weight is reused by every token and arithmetic is the limit).
 */
public abstract sealed class DenseWeight implements Weight permits Bf16Weight, F16Weight, F32Weight {
    /**
     * From this many activation rows on, widening weight blocks to f32 once and reusing them from cache beats
     * streaming the weights again for every group of four rows (formats may move the threshold, see
     * {@link #gemmMinTokens()}).
     */
    static final int GEMM_MIN_TOKENS = 24;

    protected final MemorySegment data;
    protected final int rows;
    protected final int columns;
    protected final long rowBytes;
    protected final WorkerPool pool;
    protected final Scratch scratch;

    DenseWeight(MemorySegment data, int rows, int columns, int elementBytes, WorkerPool pool, Scratch scratch) {
        this.data = data;
        this.rows = rows;
        this.columns = columns;
        this.rowBytes = (long) columns * elementBytes;
        this.pool = pool;
        this.scratch = scratch;
    }

    /**
     * Wraps a 2-D F32, F16 or BF16 checkpoint tensor.
     *
     * @throws IllegalArgumentException if the tensor is not 2-D, not of those types, or its bytes do not match
     */
    public static DenseWeight of(CheckpointTensor tensor, WorkerPool pool, Scratch scratch) {
        long[] shape = tensor.shape();
        if (shape.length != 2) {
            throw new IllegalArgumentException(tensor.name() + ": a dense weight must be 2-D, got shape " + Arrays.toString(shape));
        }
        if (shape[0] > Integer.MAX_VALUE || shape[1] > Integer.MAX_VALUE || shape[0] < 1 || shape[1] < 1) {
            throw new IllegalArgumentException(tensor.name() + ": unsupported shape " + Arrays.toString(shape));
        }
        int rows = (int) shape[0];
        int columns = (int) shape[1];
        DType dtype = tensor.dtype();
        long expected = (long) rows * columns * dtype.byteSize();
        if (tensor.data().byteSize() != expected) {
            throw new IllegalArgumentException(tensor.name() + ": " + tensor.data().byteSize() + " bytes for shape "
                    + Arrays.toString(shape) + " of " + dtype + " (expected " + expected + ")");
        }
        return switch (dtype) {
            case BF16 -> new Bf16Weight(tensor.data(), rows, columns, pool, scratch);
            case F16 -> new F16Weight(tensor.data(), rows, columns, pool, scratch);
            case F32 -> new F32Weight(tensor.data(), rows, columns, pool, scratch);
            default -> throw new IllegalArgumentException(tensor.name() + ": a dense weight must be F32, F16 or BF16, got " + dtype);
        };
    }

    @Override
    public final int rows() {
        return rows;
    }

    @Override
    public final int columns() {
        return columns;
    }

    @Override
    public final long bytes() {
        return data.byteSize();
    }

    @Override
    public final void multiply(Tensor x, Tensor out) {
        CpuTensor in = CpuTensor.f32(x);
        CpuTensor result = CpuTensor.f32(out);
        int tokens = in.rowCount();
        if (in.rowLength() != columns) {
            throw new IllegalArgumentException("input rows have " + in.rowLength() + " elements, weight has " + columns + " columns");
        }
        if (result.rowLength() != rows || result.rowCount() < tokens) {
            throw new IllegalArgumentException("output " + Arrays.toString(result.shape()) + " cannot hold "
                    + tokens + " rows of " + rows);
        }
        if (tokens == 0) return;
        if (tokens >= gemmMinTokens()) {
            Gemm.multiply(this::loadRow, rows, columns, in.array(), in.offset(), tokens, result.array(),
                    result.offset(), pool, scratch);
        } else {
            stream(in.array(), in.offset(), tokens, result.array(), result.offset());
        }
    }

    @Override
    public final void gatherRows(int[] ids, Tensor out) {
        CpuTensor result = CpuTensor.f32(out);
        if (result.rowLength() != columns || result.rowCount() < ids.length) {
            throw new IllegalArgumentException("output " + Arrays.toString(result.shape()) + " cannot hold "
                    + ids.length + " rows of " + columns);
        }
        float[] dst = result.array();
        for (int t = 0; t < ids.length; t++) {
            int id = ids[t];
            if (id < 0 || id >= rows) throw new IndexOutOfBoundsException("row " + id + " of a " + rows + "-row weight");
            loadRow(id, 0, columns, dst, result.offset() + t * columns);
        }
    }

    /** Activation rows from which {@link #multiply} uses the cache-blocked {@link Gemm} instead of {@link #stream}. */
    int gemmMinTokens() {
        return GEMM_MIN_TOKENS;
    }

    /** Writes {@code count} values of row {@code row} from column {@code column} on, as f32, to {@code dst}. */
    abstract void loadRow(int row, int column, int count, float[] dst, int dstOffset);

    /**
     * The streaming kernel for fewer than {@link #gemmMinTokens()} rows: {@code out[t, r] = x[t] · W[r]}, with x
     * row t at {@code xOffset + t·columns} and out row t at {@code outOffset + t·rows}.
     */
    abstract void stream(float[] x, int xOffset, int tokens, float[] out, int outOffset);

    /** Chunk size for {@code items} equal work items: about eight chunks per thread. */
    final int grain(int items) {
        return Math.max(1, items / (pool.threads() * 8));
    }

    @Override
    public String toString() {
        return format() + "[" + rows + "x" + columns + "]";
    }
}
