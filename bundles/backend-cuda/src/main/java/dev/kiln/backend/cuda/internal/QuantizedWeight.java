package dev.kiln.backend.cuda.internal;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cuda.bindings.Cublas;
import java.lang.foreign.MemorySegment;

/**
 * A weight of the weight-only integer formats resident in device memory, codes and scales uploaded once:
 * <ul>
 *   <li>{@link Format#INT8}: signed 8-bit codes in rows of {@link #rowBytes} (columns rounded up to 16, zero padding),
 *       one f32 scale per row: {@code W[r, c] = q[r, c] · s[r]};</li>
 *   <li>{@link Format#INT4}: 4-bit codes {@code u = q + 8} two per byte (column 2j in the low nibble of byte j, 2j + 1
 *       in its high nibble), rows of columns rounded up to 32, halved; one f32 scale per row and group of
 *       {@code groupSize} consecutive columns, the last group of a row possibly partial:
 *       {@code W[r, c] = (u[r, c] - 8) · s[r, c / groupSize]}.</li>
 * </ul>
 * Every row starts 16-byte aligned, so the kernels load 16 bytes of INT8 or 8 of INT4 codes (16 columns) at a time.
 * The scales follow the codes in one allocation: a kernel given only the codes' address and the shape finds them
 * (the token-specialised products of {@link Kernels#gemvInt8} and {@link Kernels#gemvInt4} take the arguments of the
 * bf16 ones that way).
 *
 * <p>Products of the tokens {@link Kernels#skinnyTakes} (decode batches of 4 to 32 for INT8, 3 to 32 for INT4, see
 * {@link Kernels#skinnyMinTokens}; INT4 in groups of a multiple of 64 columns) stream the codes once into the
 * tensor-core kernels, widened to bf16 in registers, against the activations' bf16 parts. INT8 products of 1 to
 * {@link Kernels#INT8_GEMV_MAX_TOKENS} tokens take the token-specialised kernels of bf16 weights, fusions included (the
 * norm before, q/k/v and gate/up each in one launch, the gating, the bias and the residual add); so do INT4 products of
 * one token in groups of {@link Kernels#INT4_GEMV_GROUP} columns, all but the norm. Other products of up to {@link QuantKernels#GEMV_MAX_TOKENS} rows (decode) stream the codes once, widened to floats in
 * registers, with f32 sums. Larger products dequantize the weight, a tile of rows at a time, into bf16 scratch for
 * cuBLAS, with the activations split into bf16 high and low parts as {@link DenseWeight} does: INT8 codes are exact in
 * bf16, so two GEMMs sum {@code q · x} and a small kernel applies the row scales; INT4 weights {@code (u - 8) · s} are
 * split into high and low parts too, and three GEMMs (high × high, high × low, low × high) keep about 16 bits of both
 * factors.
 */
public final class QuantizedWeight implements DeviceRowGather {
    /** The storage formats. */
    public enum Format {
        /** Per-row INT8 ({@code weight_only_int8}). */
        INT8("weight_only_int8"),
        /** Group-wise INT4 ({@code weight_only_int4}). */
        INT4("weight_only_int4");

        private final String formatName;

        Format(String formatName) {
            this.formatName = formatName;
        }

        /** The format's name, as {@link Weight#format()} reports it. */
        public String formatName() {
            return formatName;
        }
    }

    private final CudaContext context;
    private final Format format;
    private final int rows;
    private final int columns;
    private final int groupSize;
    private final int groups;
    private final int rowBytes;
    private final long codes;
    private final long scales;
    private volatile boolean closed;

    private QuantizedWeight(Builder b) {
        this.context = b.context;
        // Compile (or load from the cache) the formats' kernels while the model loads: done lazily at the first
        // product, NVRTC's ~10 s on a fresh machine fell on the first request.
        b.context.quantKernels();
        this.format = b.format;
        this.rows = b.rows;
        this.columns = b.columns;
        this.groupSize = b.groupSize;
        this.groups = b.scalesPerRow;
        this.rowBytes = b.rowBytes;
        this.codes = b.codes;
        this.scales = b.scales;
    }

    /** Bytes of one row of codes in a format: columns rounded up to 16 (INT8) or to 32, halved (INT4). */
    public static int rowBytes(Format format, int columns) {
        return switch (format) {
            case INT8 -> (columns + 15) / 16 * 16;
            case INT4 -> (columns + 31) / 32 * 16;
        };
    }

    /** Scales per row: one (INT8), or one per group of {@code groupSize} columns (INT4). */
    public static int scalesPerRow(Format format, int columns, int groupSize) {
        return format == Format.INT8 ? 1 : (columns + groupSize - 1) / groupSize;
    }

    /**
     * Collects a weight's codes and scales in device memory, a band of rows at a time (in the layout above), and hands
     * the memory to the weight ({@link #build}) or releases it ({@link #discard}).
     */
    public static final class Builder {
        private final CudaContext context;
        private final Format format;
        private final int rows;
        private final int columns;
        private final int groupSize;
        private final int scalesPerRow;
        private final int rowBytes;
        private long codes;
        private long scales;

        /**
         * @param groupSize columns per INT4 scale: a power of two, at least 16 (ignored for INT8)
         * @throws IllegalArgumentException when the geometry is invalid
         */
        public Builder(CudaContext context, Format format, int rows, int columns, int groupSize) {
            if (rows < 1 || columns < 1) throw new IllegalArgumentException("invalid weight shape " + rows + "x" + columns);
            if (format == Format.INT4 && (groupSize < QuantKernels.STEP || Integer.bitCount(groupSize) != 1)) {
                throw new IllegalArgumentException("INT4 group size " + groupSize + " is not a power of two of at least "
                        + QuantKernels.STEP);
            }
            this.context = context;
            this.format = format;
            this.rows = rows;
            this.columns = columns;
            this.groupSize = format == Format.INT4 ? groupSize : 0;
            this.scalesPerRow = QuantizedWeight.scalesPerRow(format, columns, groupSize);
            this.rowBytes = QuantizedWeight.rowBytes(format, columns);
            this.codes = context.allocate((long) rows * rowBytes + 4L * rows * scalesPerRow);
            this.scales = codes + (long) rows * rowBytes; // 16-byte aligned: rowBytes is a multiple of 16
        }

        /** Bytes of one row of codes. */
        public int rowBytes() {
            return rowBytes;
        }

        /** Scales per row. */
        public int scalesPerRow() {
            return scalesPerRow;
        }

        /**
         * Copies rows {@code firstRow ..} to the device: their codes ({@code count · rowBytes} bytes) and scales
         * ({@code count · scalesPerRow} little-endian floats), both in host memory.
         */
        public void write(int firstRow, int count, MemorySegment rowCodes, MemorySegment rowScales) {
            if (firstRow < 0 || count < 0 || firstRow + count > rows
                    || rowCodes.byteSize() < (long) count * rowBytes || rowScales.byteSize() < 4L * count * scalesPerRow) {
                throw new IllegalArgumentException("rows " + firstRow + " + " + count + " of " + rows + " with "
                        + rowCodes.byteSize() + " code and " + rowScales.byteSize() + " scale bytes");
            }
            if (count == 0) return;
            context.copyToDeviceNow(codes + (long) firstRow * rowBytes, rowCodes.asSlice(0, (long) count * rowBytes));
            context.copyToDeviceNow(scales + 4L * firstRow * scalesPerRow, rowScales.asSlice(0, 4L * count * scalesPerRow));
        }

        /** The weight, owning the memory from now on. */
        public QuantizedWeight build() {
            return new QuantizedWeight(this);
        }

        /** Releases the memory (after a failure). */
        public void discard() {
            context.free(codes);
        }
    }

    /**
     * Whether a weight is a quantized weight of this shape with unpadded rows, in {@code format} (INT4: groups of
     * {@code groupSize} columns): the layout the grouped expert products read ({@link CudaRoutedExperts}).
     */
    static boolean isGroupedExpert(Weight w, Format format, int groupSize, int rows, int columns) {
        return w instanceof QuantizedWeight q && q.format == format && q.rows == rows && q.columns == columns
                && (format == Format.INT8 ? q.rowBytes == columns : q.rowBytes * 2 == columns && q.groupSize == groupSize);
    }

    /** The device address of the codes (the scales follow them). */
    long codesAddress() {
        return codes;
    }

    /** The format. */
    public Format storage() {
        return format;
    }

    @Override
    public String format() {
        return format.formatName();
    }

    @Override
    public int rows() {
        return rows;
    }

    @Override
    public int columns() {
        return columns;
    }

    /** Columns per scale (INT4), or 0 (INT8: one scale per row). */
    public int groupSize() {
        return groupSize;
    }

    @Override
    public long bytes() {
        return (long) rows * rowBytes + 4L * rows * groups;
    }

    @Override
    public void multiply(Tensor x, Tensor out) {
        checkOpen();
        CudaTensor in = CudaTensor.f32(x, context);
        CudaTensor o = CudaTensor.f32(out, context);
        int tokens = in.rowCount();
        if (in.rowLength() != columns || o.rowLength() != rows || o.rowCount() < tokens) {
            throw new IllegalArgumentException("cannot multiply " + in + " by a " + format() + " weight [" + rows + ", "
                    + columns + "] into " + o);
        }
        if (tokens == 0) return;
        String skinny = format == Format.INT8 ? "int8" : "int4";
        boolean whole = format == Format.INT8 ? rowBytes == columns : rowBytes == columns / 2 && groupSize % SkinnyPlan.CHUNK == 0;
        if (whole && context.kernels().skinnyTakes(tokens, rows, columns, codes, skinny)) {
            // A decode batch on the tensor cores: the codes read once, widened to bf16 (exact) in registers; INT8's
            // row scales multiply the sums, INT4's group scales each 64-column chunk's.
            DenseWeight.multiplyParts(context, in.pointer(), o.pointer(), tokens, rows, columns, (parts, ignored) ->
                    context.kernels().skinny(skinny, codes, scales, 1, format == Format.INT8 ? columns : groupSize,
                            parts[0], parts[1], o.pointer(), rows, columns, tokens));
            return;
        }
        if (format == Format.INT8 && context.kernels().gemvInt8(codes, in.pointer(), o.pointer(), rows, columns, tokens)) {
            return;
        }
        if (format == Format.INT4 && groupSize == Kernels.INT4_GEMV_GROUP
                && context.kernels().gemvInt4(codes, in.pointer(), o.pointer(), rows, columns, tokens)) {
            return;
        }
        QuantKernels kernels = context.quantKernels();
        if (tokens <= QuantKernels.GEMV_MAX_TOKENS) {
            if (format == Format.INT8) {
                kernels.int8Gemv(codes, scales, in.pointer(), o.pointer(), rows, columns, rowBytes, tokens);
            } else {
                kernels.int4Gemv(codes, scales, in.pointer(), o.pointer(), rows, columns, rowBytes, groups, groupSize, tokens);
            }
            return;
        }
        prefill(kernels, in, o, tokens);
    }

    /**
     * Row-major {@code out[T, rows] = x[T, cols] · Wᵀ} is, column-major, {@code out (rows × T) = Wᵀ · x}, where a tile
     * of W's rows, row-major {@code [n, cols]}, is column-major {@code cols × n}: op(A) = Aᵀ, and the tile's product
     * lands at row offset {@code first} of out's columns (leading dimension {@code rows}).
     */
    private void prefill(QuantKernels kernels, CudaTensor in, CudaTensor o, int tokens) {
        long n = (long) tokens * columns;
        long[] parts = context.matmulScratch().bf16Pair(n);
        context.kernels().splitBf16(in.pointer(), parts[0], parts[1], n);
        int tileRows = QuantKernels.tileRows(rows, columns);
        long[] tile = kernels.tiles((long) tileRows * columns, format == Format.INT8 ? 1 : 2);
        for (int first = 0; first < rows; first += tileRows) {
            int count = Math.min(tileRows, rows - first);
            long product = o.pointer() + 4L * first;
            if (format == Format.INT8) {
                kernels.int8CodesBf16(codes + (long) first * rowBytes, rowBytes, columns, count, tile[0]);
                gemm(count, tokens, tile[0], parts[0], false, product);
                gemm(count, tokens, tile[0], parts[1], true, product);
            } else {
                kernels.int4DequantizeSplit(codes + (long) first * rowBytes, scales + 4L * first * groups, rowBytes, columns,
                        groups, groupSize, count, tile[0], tile[1]);
                gemm(count, tokens, tile[0], parts[0], false, product);
                gemm(count, tokens, tile[0], parts[1], true, product);
                gemm(count, tokens, tile[1], parts[0], true, product);
            }
        }
        if (format == Format.INT8) kernels.int8ScaleProduct(o.pointer(), scales, (long) tokens * rows, rows);
    }

    /** Held by the recorder in order with the tile's dequantization, so a repeated batched step replays as graphs. */
    private void gemm(int tileRows, int tokens, long weightTile, long activations, boolean accumulate, long product) {
        context.gemm(Cublas.OP_T, Cublas.OP_N, tileRows, tokens, columns, weightTile, Cublas.R_16BF, columns, activations,
                Cublas.R_16BF, columns, accumulate, product, rows);
    }

    @Override
    public CudaContext context() {
        return context;
    }

    @Override
    public void gatherRows(long deviceIds, int count, Tensor out) {
        checkOpen();
        CudaTensor o = DeviceRowGather.gatherOutput(context, out, count, columns);
        if (count == 0) return;
        QuantKernels kernels = context.quantKernels();
        if (format == Format.INT8) {
            kernels.int8GatherRows(codes, scales, deviceIds, o.pointer(), count, columns, rowBytes);
        } else {
            kernels.int4GatherRows(codes, scales, deviceIds, o.pointer(), count, columns, rowBytes, groups, groupSize);
        }
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("weight is closed");
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        context.free(codes); // and the scales after them
    }

    @Override
    public String toString() {
        return format() + (format == Format.INT4 ? " (groups of " + groupSize + ")" : "") + " [" + rows + ", " + columns + "]";
    }
}
