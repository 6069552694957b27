package dev.kiln.backend.cpu;

import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Objects;

/**
 * A tensor of the CPU backend. F32 tensors live in a Java {@code float[]} (the Vector API reads heap arrays
 * fastest, and activations are small enough); other element types live in a {@link MemorySegment}.
 *
 * <p>A tensor may be a view of part of its storage: its elements start at {@link #offset()} of {@link #array()}
 * and are contiguous, row after row.
 */
public final class CpuTensor implements Tensor {
    private final DType dtype;
    private final long[] shape;
    private final float[] floats;
    private final MemorySegment bytes;
    private final int offset;

    private CpuTensor(DType dtype, long[] shape, float[] floats, MemorySegment bytes, int offset) {
        this.dtype = dtype;
        this.shape = shape;
        this.floats = floats;
        this.bytes = bytes;
        this.offset = offset;
    }

    /**
     * Allocates a zero-filled tensor.
     *
     * @throws IllegalArgumentException if the shape is empty, has a negative dimension, or an F32 tensor would
     *                                  exceed the size of a Java array
     */
    public static CpuTensor allocate(DType dtype, long... shape) {
        Objects.requireNonNull(dtype, "dtype");
        long size = checkShape(shape);
        if (dtype == DType.F32) {
            if (size > Integer.MAX_VALUE - 8) {
                throw new IllegalArgumentException("F32 tensor of " + size + " elements exceeds a Java array");
            }
            return new CpuTensor(dtype, shape.clone(), new float[(int) size], null, 0);
        }
        // long[] backing keeps every element type's natural alignment (up to 8 bytes).
        long byteSize = size * dtype.byteSize();
        long words = (byteSize + 7) / 8;
        if (words > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException(dtype + " tensor of " + size + " elements is too large for the heap");
        }
        MemorySegment segment = MemorySegment.ofArray(new long[(int) words]).asSlice(0, byteSize);
        return new CpuTensor(dtype, shape.clone(), null, segment, 0);
    }

    /**
     * Wraps existing F32 values (no copy) as a tensor of the given shape.
     *
     * @throws IllegalArgumentException if the array holds fewer than {@code offset + size} elements
     */
    public static CpuTensor wrap(float[] values, int offset, long... shape) {
        long size = checkShape(shape);
        if (offset < 0 || offset + size > values.length) {
            throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " at offset " + offset
                    + " does not fit in an array of " + values.length);
        }
        return new CpuTensor(DType.F32, shape.clone(), values, null, offset);
    }

    /**
     * The tensor as a CPU tensor.
     *
     * @throws IllegalArgumentException if it belongs to another backend
     */
    public static CpuTensor of(Tensor tensor) {
        if (tensor instanceof CpuTensor t) return t;
        throw new IllegalArgumentException("not a CPU tensor: " + (tensor == null ? "null" : tensor.getClass().getName()));
    }

    /**
     * The tensor as an F32 CPU tensor.
     *
     * @throws IllegalArgumentException if it belongs to another backend or is not F32
     */
    public static CpuTensor f32(Tensor tensor) {
        CpuTensor t = of(tensor);
        if (t.dtype != DType.F32) throw new IllegalArgumentException("expected an F32 tensor, got " + t.dtype);
        return t;
    }

    private static long checkShape(long[] shape) {
        if (shape == null || shape.length == 0) throw new IllegalArgumentException("a tensor needs at least one dimension");
        long size = 1;
        for (long d : shape) {
            if (d < 0) throw new IllegalArgumentException("negative dimension in " + Arrays.toString(shape));
            size = Math.multiplyExact(size, d);
        }
        return size;
    }

    @Override
    public DType dtype() {
        return dtype;
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    @Override
    public long size() {
        long n = 1;
        for (long d : shape) n *= d;
        return n;
    }

    @Override
    public int rowCount() {
        return (int) shape[0];
    }

    @Override
    public int rowLength() {
        long n = 1;
        for (int i = 1; i < shape.length; i++) n *= shape[i];
        return (int) n;
    }

    /**
     * The F32 storage; this tensor's elements start at {@link #offset()}.
     *
     * @throws IllegalStateException if the tensor is not F32
     */
    public float[] array() {
        if (floats == null) throw new IllegalStateException(dtype + " tensor has no float[] storage");
        return floats;
    }

    /** Index of this tensor's first element in {@link #array()} (0 for non-F32 tensors). */
    public int offset() {
        return offset;
    }

    /** Index in {@link #array()} of the first element of row {@code row}. */
    public int rowOffset(int row) {
        return offset + row * rowLength();
    }

    /**
     * The tensor's bytes: a slice of the segment for non-F32 tensors, a heap segment over the array's elements for
     * F32 ones.
     */
    public MemorySegment segment() {
        if (floats != null) return MemorySegment.ofArray(floats).asSlice(offset * 4L, size() * 4L);
        return bytes;
    }

    @Override
    public CpuTensor rows(int rows) {
        return rowRange(0, rows);
    }

    /**
     * A view of rows {@code from} (inclusive) to {@code to} (exclusive), sharing storage with this tensor.
     *
     * @throws IllegalArgumentException if the range is not within {@code [0, rowCount()]}
     */
    public CpuTensor rowRange(int from, int to) {
        if (from < 0 || to < from || to > shape[0]) {
            throw new IllegalArgumentException("rows " + from + ".." + to + " outside a tensor of " + shape[0] + " rows");
        }
        long[] s = shape.clone();
        s[0] = to - from;
        long rowSize = rowLength();
        if (floats != null) return new CpuTensor(dtype, s, floats, null, Math.toIntExact(offset + from * rowSize));
        long rowBytes = rowSize * dtype.byteSize();
        return new CpuTensor(dtype, s, null, bytes.asSlice(from * rowBytes, (to - from) * rowBytes), 0);
    }

    /** Heap storage is reclaimed by the garbage collector once unreferenced, so closing only marks intent. */
    @Override
    public void close() {}

    @Override
    public String toString() {
        return "CpuTensor[" + dtype + " " + Arrays.toString(shape) + "]";
    }
}
