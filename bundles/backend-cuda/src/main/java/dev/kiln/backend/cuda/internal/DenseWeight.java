package dev.kiln.backend.cuda.internal;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cuda.bindings.Cublas;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * A dense weight resident in device memory, copied once from the checkpoint: bf16 as stored, f32 as stored, f16
 * widened to f32 (cuBLAS multiplies only operands of one type, and f16 halves of activations would overflow).
 *
 * <p>Products of up to {@link Kernels#GEMV_TOKEN_LIMIT} rows of a bf16 weight (up to {@link Kernels#GEMV_MAX_TOKENS}
 * of an f32 one) stream the weight once through the project's GEMV kernels with f32 accumulation. Larger products
 * go to cuBLAS: a bf16 weight is multiplied with the activations split into bf16 high and low parts (one GEMM over
 * both up to {@link #PAIRED_MAX_TOKENS} rows, two accumulating GEMMs above), f32 accumulation, which keeps about 16
 * bits of each activation where a single bf16 rounding would keep 8; an f32 weight is one f32 GEMM (no TF32).
 */
public final class DenseWeight implements DeviceRowGather {
    private static final ValueLayout.OfShort HALF = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final long CONVERSION_CHUNK = 1 << 22;

    private final CudaContext context;
    private final boolean bf16;
    private final int rows;
    private final int columns;
    private final long pointer;
    private volatile boolean closed;

    private DenseWeight(CudaContext context, boolean bf16, int rows, int columns, long pointer) {
        this.context = context;
        this.bf16 = bf16;
        this.rows = rows;
        this.columns = columns;
        this.pointer = pointer;
    }

    /**
     * Copies a 2-D F32, F16 or BF16 checkpoint tensor to the device.
     *
     * @throws IllegalArgumentException if the tensor is not 2-D or not of those types
     */
    public static DenseWeight of(CudaContext context, CheckpointTensor tensor) {
        if (tensor.shape().length != 2) {
            throw new IllegalArgumentException(tensor.name() + " is not a matrix: " + java.util.Arrays.toString(tensor.shape()));
        }
        int rows = tensor.rows();
        int columns = tensor.columns();
        long elements = (long) rows * columns;
        MemorySegment data = tensor.data();
        return switch (tensor.dtype()) {
            case BF16 -> {
                long p = context.allocate(elements * 2);
                copy(context, p, data, elements * 2);
                yield new DenseWeight(context, true, rows, columns, p);
            }
            case F32 -> {
                long p = context.allocate(elements * 4);
                copy(context, p, data, elements * 4);
                yield new DenseWeight(context, false, rows, columns, p);
            }
            case F16 -> {
                long p = context.allocate(elements * 4);
                widenF16(context, p, data, elements);
                yield new DenseWeight(context, false, rows, columns, p);
            }
            default -> throw new IllegalArgumentException(tensor.name() + ": a dense weight must be F32, F16 or BF16, not "
                    + tensor.dtype());
        };
    }

    private static void copy(CudaContext context, long destination, MemorySegment data, long bytes) {
        try {
            context.copyToDeviceNow(destination, data.asSlice(0, bytes));
        } catch (RuntimeException e) {
            context.free(destination);
            throw e;
        }
    }

    private static void widenF16(CudaContext context, long destination, MemorySegment data, long elements) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buffer = arena.allocate(CONVERSION_CHUNK * Float.BYTES, 16);
            for (long start = 0; start < elements; start += CONVERSION_CHUNK) {
                long n = Math.min(CONVERSION_CHUNK, elements - start);
                for (long i = 0; i < n; i++) {
                    buffer.setAtIndex(ValueLayout.JAVA_FLOAT, i, Float.float16ToFloat(data.get(HALF, 2 * (start + i))));
                }
                context.copyToDeviceNow(destination + 4 * start, buffer.asSlice(0, n * Float.BYTES));
            }
        } catch (RuntimeException e) {
            context.free(destination);
            throw e;
        }
    }

    @Override
    public String format() {
        return bf16 ? "bf16" : "f32";
    }

    @Override
    public int rows() {
        return rows;
    }

    @Override
    public int columns() {
        return columns;
    }

    @Override
    public long bytes() {
        return (long) rows * columns * (bf16 ? 2 : 4);
    }

    /** The device address of the weight. */
    public long pointer() {
        return pointer;
    }

    /** Whether the weight is stored as bf16 (else f32). */
    public boolean isBf16() {
        return bf16;
    }

    /** Whether {@code w} is a dense bf16 weight {@code [rows, columns]}: what the grouped kernels multiply. */
    public static boolean isBf16(Weight w, int rows, int columns) {
        return w instanceof DenseWeight d && d.bf16 && d.rows == rows && d.columns == columns;
    }

    /** Whether a weight is dense f32 of this shape in this backend's layout. */
    public static boolean isF32(Weight w, int rows, int columns) {
        return w instanceof DenseWeight d && !d.bf16 && d.rows == rows && d.columns == columns;
    }

    /**
     * Writes the device addresses of weights, in order, into the table at {@code table} (8 bytes each): how the grouped
     * kernels find each expert's or head's weight. Dense weights give their values' address; FP8 and INT8/INT4 weights
     * their codes', which their scales follow.
     */
    public static void writeAddressTable(CudaContext context, Weight[] weights, long table) {
        long[] addresses = new long[weights.length];
        for (int i = 0; i < weights.length; i++) {
            addresses[i] = switch (weights[i]) {
                case DenseWeight d -> d.pointer;
                case Fp8Weight f -> f.codesAddress();
                case QuantizedWeight q -> q.codesAddress();
                default -> throw new IllegalArgumentException("no device address table of " + weights[i]);
            };
        }
        try (Arena arena = Arena.ofConfined()) {
            context.copyToDeviceNow(table, arena.allocateFrom(ValueLayout.JAVA_LONG, addresses));
        }
    }

    /** A product of activations split into bf16 parts ({@code {hi, lo}}), given the scratch that holds them. */
    interface PartsProduct {
        void queue(long[] parts, MatmulScratch scratch);
    }

    /**
     * Queues {@code product} over the bf16 parts of the activations at x: parts split by the product just before
     * (q, k and v, or gate and up, multiply the same activations) are reused, else the launch that wrote x stores them
     * as it writes (a norm, or the gated MLP product), else kiln_split_bf16 makes them.
     */
    static void multiplyParts(CudaContext context, long x, long out, int tokens, int rows, int columns,
                              PartsProduct product) {
        long n = (long) tokens * columns;
        MatmulScratch scratch = context.matmulScratch();
        long[] parts = scratch.heldParts(x, n);
        if (parts == null) {
            parts = scratch.bf16Pair(n); // the buffer the held parts (if any) are not in
            if (!context.kernels().splitInHeld(x, parts[0], parts[1], n)) context.kernels().splitBf16(x, parts[0], parts[1], n);
        }
        product.queue(parts, scratch);
        scratch.splitBy(x, n, out, 4L * tokens * rows, parts);
    }

    /** Tokens up to which a bf16 product is one GEMM over the high and low activation parts side by side. */
    static final int PAIRED_MAX_TOKENS = 128;

    @Override
    public void multiply(Tensor x, Tensor out) {
        checkOpen();
        CudaTensor in = CudaTensor.f32(x, context);
        CudaTensor o = CudaTensor.f32(out, context);
        int tokens = in.rowCount();
        if (in.rowLength() != columns || o.rowLength() != rows || o.rowCount() < tokens) {
            throw new IllegalArgumentException("cannot multiply " + in + " by a weight [" + rows + ", " + columns
                    + "] into " + o);
        }
        if (tokens == 0) return;
        Kernels kernels = context.kernels();
        if (bf16 && kernels.skinnyTakes(tokens, rows, columns, pointer, "bf16")) {
            // A decode batch on the tensor cores: the weight read once, the activations as bf16 high and low parts.
            multiplyParts(context, in.pointer(), o.pointer(), tokens, rows, columns, (parts, ignored) ->
                    kernels.skinny("bf16", pointer, 0, 1, columns, parts[0], parts[1], o.pointer(), rows, columns, tokens));
            return;
        }
        if (tokens <= Kernels.GEMV_TOKEN_LIMIT || (!bf16 && tokens <= Kernels.GEMV_MAX_TOKENS)) {
            kernels.gemv(bf16, pointer, in.pointer(), o.pointer(), rows, columns, tokens);
            return;
        }
        // Row-major out[T, rows] = x[T, cols] · Wᵀ is, column-major, out (rows × T) = Wᵀ(rows × cols) · x (cols × T),
        // where W row-major [rows, cols] is column-major cols × rows: op(A) = Aᵀ.
        context.bind();
        if (bf16 && tokens <= PAIRED_MAX_TOKENS) {
            // Decode batches are bound by reading W: one GEMM over the 2T columns [hi | lo] reads it once, and a
            // small kernel sums the two halves of its product.
            multiplyParts(context, in.pointer(), o.pointer(), tokens, rows, columns, (parts, scratch) -> {
                long products = scratch.products(2L * tokens * rows);
                context.gemm(Cublas.OP_T, Cublas.OP_N, rows, 2 * tokens, columns, pointer, Cublas.R_16BF,
                        columns, parts[0], Cublas.R_16BF, columns, false, products, rows);
                kernels.addHalves(products, o.pointer(), (long) tokens * rows);
            });
        } else if (bf16) {
            // Prefill is bound by arithmetic, and the paired product's scratch would grow with the prompt.
            long n = (long) tokens * columns;
            long[] parts = context.matmulScratch().bf16Pair(n);
            context.kernels().splitBf16(in.pointer(), parts[0], parts[1], n);
            context.gemm(Cublas.OP_T, Cublas.OP_N, rows, tokens, columns, pointer, Cublas.R_16BF,
                    columns, parts[0], Cublas.R_16BF, columns, false, o.pointer(), rows);
            context.gemm(Cublas.OP_T, Cublas.OP_N, rows, tokens, columns, pointer, Cublas.R_16BF,
                    columns, parts[1], Cublas.R_16BF, columns, true, o.pointer(), rows);
        } else {
            context.gemm(Cublas.OP_T, Cublas.OP_N, rows, tokens, columns, pointer, Cublas.R_32F,
                    columns, in.pointer(), Cublas.R_32F, columns, false, o.pointer(), rows);
        }
    }

    @Override
    public CudaContext context() {
        return context;
    }

    @Override
    public void gatherRows(long deviceIds, int count, Tensor out) {
        checkOpen();
        CudaTensor o = DeviceRowGather.gatherOutput(context, out, count, columns);
        context.kernels().embed(bf16, pointer, deviceIds, o.pointer(), count, columns);
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("weight is closed");
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        context.free(pointer);
    }
}
