package dev.kiln.backend.cuda.internal;

import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import java.util.Arrays;

/**
 * A tensor in device memory: a pointer, a type and a shape. Views made by {@link #rows(int)} share the pointer
 * and own nothing.
 */
public final class CudaTensor implements Tensor {
    private final CudaContext context;
    private final DType dtype;
    private final long[] shape;
    private final long pointer;
    private final boolean owner;
    private volatile boolean closed;

    private CudaTensor(CudaContext context, DType dtype, long[] shape, long pointer, boolean owner) {
        this.context = context;
        this.dtype = dtype;
        this.shape = shape;
        this.pointer = pointer;
        this.owner = owner;
    }

    /** Allocates an uninitialised tensor. */
    public static CudaTensor allocate(CudaContext context, DType dtype, long... shape) {
        if (shape.length == 0) throw new IllegalArgumentException("a tensor needs at least one dimension");
        long elements = 1;
        for (long d : shape) {
            if (d < 0) throw new IllegalArgumentException("negative dimension in " + Arrays.toString(shape));
            elements = Math.multiplyExact(elements, d);
        }
        long pointer = context.allocate(Math.multiplyExact(elements, (long) dtype.byteSize()));
        return new CudaTensor(context, dtype, shape.clone(), pointer, true);
    }

    /**
     * The tensor as a CUDA tensor of this context.
     *
     * @throws IllegalArgumentException if it belongs to another backend or device
     */
    public static CudaTensor of(Tensor tensor, CudaContext context) {
        if (!(tensor instanceof CudaTensor t) || t.context != context) {
            throw new IllegalArgumentException("not a tensor of this CUDA backend: " + tensor);
        }
        if (t.closed) throw new IllegalStateException("tensor is closed: " + t);
        return t;
    }

    /** The tensor as an F32 CUDA tensor of this context. */
    public static CudaTensor f32(Tensor tensor, CudaContext context) {
        CudaTensor t = of(tensor, context);
        if (t.dtype != DType.F32) throw new IllegalArgumentException("expected an F32 tensor, got " + t);
        return t;
    }

    /** The device address of the first element. */
    public long pointer() {
        return pointer;
    }

    /** The device address of row {@code r}. */
    public long rowPointer(long r) {
        return pointer + r * rowLength() * dtype.byteSize();
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
    public int rowCount() {
        return (int) shape[0];
    }

    @Override
    public Tensor rows(int rows) {
        if (rows < 0 || rows > shape[0]) {
            throw new IllegalArgumentException(rows + " rows requested of " + this);
        }
        long[] s = shape.clone();
        s[0] = rows;
        return new CudaTensor(context, dtype, s, pointer, false);
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        if (owner) context.free(pointer);
    }

    @Override
    public String toString() {
        return "CudaTensor" + Arrays.toString(shape) + " " + dtype + (owner ? "" : " (view)");
    }
}
