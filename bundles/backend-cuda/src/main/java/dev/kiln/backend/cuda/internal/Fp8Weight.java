package dev.kiln.backend.cuda.internal;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cuda.bindings.Cublas;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * An FP8 block weight ({@code fp8}) resident in device memory: e4m3 codes, one byte per weight, in rows of
 * {@link #rowBytes} (columns rounded up to 16, zero padding, so every row starts 16-byte aligned), and one f32 scale
 * per block of {@code blockRows × blockColumns} elements, row-major over the blocks, edge blocks partial:
 * {@code W[r, c] = e4m3(code[r, c]) · scale[r / blockRows, c / blockColumns]}, the layout of DeepSeek-V3's
 * {@code weight} and {@code weight_scale_inv}. Codes and scales are uploaded once, never widened. The scales follow
 * the codes in one allocation, so that a kernel given only the codes' address and the shape finds them.
 *
 * <p>Decode products of 1 to {@link Kernels#FP8_GEMV_MAX_TOKENS} tokens in blocks of 128 × 128 (DeepSeek-V3's, and
 * the quantizer's) take the token-specialised products of {@link Kernels#gemvFp8}, with the fusions the recorder gives
 * bf16 products (the norm before, q/k/v and gate/up in one launch, the gating, bias and residual add after).
 * Decode batches of 4 to 32 tokens ({@link Kernels#skinnyMinTokens}) over blocks of a multiple of 64 columns take the
 * tensor-core kernels ({@link Kernels#skinnyTakes}) first: codes decoded to bf16 in registers, each 64-column chunk's sums times its block's
 * scale. Other products of up to {@link QuantKernels#GEMV_MAX_TOKENS} rows (decode) stream the codes once, 16 per 16-byte load,
 * decoded to f32 in registers, each 16-column step's sums scaled by its block's scale, f32 accumulation. Larger
 * products dequantize the weight, a tile of rows at a time, into bf16 scratch for cuBLAS with the activations split
 * into bf16 high and low parts as {@link DenseWeight} does. e4m3 values are exact in bf16, but a block scale makes
 * {@code code · scale} arbitrary and, unlike INT8's row scale, cannot be applied once after a GEMM over the whole row:
 * the dequantized weight is split into high and low parts too, and three GEMMs (high × high, high × low, low × high)
 * keep about 16 bits of both factors, as for INT4 ({@link QuantizedWeight}).
 */
public final class Fp8Weight implements DeviceRowGather {
    /** The format's name. */
    public static final String FORMAT = "fp8";

    private final CudaContext context;
    private final int rows;
    private final int columns;
    private final int blockRows;
    private final int blockColumns;
    private final int rowBlocks;
    private final int columnBlocks;
    private final int rowBytes;
    private final long codes;
    private final long scales;
    private volatile boolean closed;

    private Fp8Weight(Builder b) {
        this.context = b.context;
        // Compile (or load from the cache) the formats' kernels while the model loads: done lazily at the first
        // product, NVRTC's ~10 s on a fresh machine fell on the first request.
        b.context.quantKernels();
        this.rows = b.rows;
        this.columns = b.columns;
        this.blockRows = b.blockRows;
        this.blockColumns = b.blockColumns;
        this.rowBlocks = b.rowBlocks;
        this.columnBlocks = b.columnBlocks;
        this.rowBytes = b.rowBytes;
        this.codes = b.codes;
        this.scales = b.scales;
    }

    /**
     * Whether a weight is an FP8 weight of this shape in blocks of 128 x 128 with unpadded rows: the layout the grouped
     * expert products read ({@link CudaRoutedExperts}).
     */
    static boolean isGroupedExpert(Weight w, int rows, int columns) {
        return w instanceof Fp8Weight f && f.rows == rows && f.columns == columns && f.rowBytes == columns
                && f.blockRows == GroupedKernels.FP8_BLOCK && f.blockColumns == GroupedKernels.FP8_BLOCK;
    }

    /** The device address of the codes (the block scales follow them). */
    long codesAddress() {
        return codes;
    }

    /** Bytes of one row of codes: the columns rounded up to 16. */
    public static int rowBytes(int columns) {
        return (columns + QuantKernels.STEP - 1) / QuantKernels.STEP * QuantKernels.STEP;
    }

    /** Blocks of {@code block} along a dimension of {@code n}, the last one possibly partial. */
    public static int blocks(int n, int block) {
        return Math.ceilDiv(n, block);
    }

    /**
     * Collects a weight's codes (a band of rows at a time, in the layout above) and its block scales in device memory,
     * and hands the memory to the weight ({@link #build}) or releases it ({@link #discard}).
     */
    public static final class Builder {
        private final CudaContext context;
        private final int rows;
        private final int columns;
        private final int blockRows;
        private final int blockColumns;
        private final int rowBlocks;
        private final int columnBlocks;
        private final int rowBytes;
        private final long codes;
        private final long scales;
        private boolean scalesWritten;

        /** @throws IllegalArgumentException when the geometry is invalid */
        public Builder(CudaContext context, int rows, int columns, int blockRows, int blockColumns) {
            if (rows < 1 || columns < 1 || columns > Integer.MAX_VALUE - QuantKernels.STEP || blockRows < 1
                    || blockColumns < 1) {
                throw new IllegalArgumentException("invalid FP8 weight geometry " + rows + "x" + columns + " in blocks of "
                        + blockRows + "x" + blockColumns);
            }
            this.context = context;
            this.rows = rows;
            this.columns = columns;
            this.blockRows = blockRows;
            this.blockColumns = blockColumns;
            this.rowBlocks = blocks(rows, blockRows);
            this.columnBlocks = blocks(columns, blockColumns);
            this.rowBytes = Fp8Weight.rowBytes(columns);
            this.codes = context.allocate((long) rows * rowBytes + 4L * rowBlocks * columnBlocks);
            this.scales = codes + (long) rows * rowBytes; // 16-byte aligned: rowBytes is a multiple of 16
        }

        /** Bytes of one row of codes. */
        public int rowBytes() {
            return rowBytes;
        }

        /**
         * Copies the codes of rows {@code firstRow ..} to the device: {@code count · rowBytes} bytes in host memory, in
         * the device layout (see {@link #rowBytes}).
         */
        public void writeCodes(int firstRow, int count, MemorySegment rowCodes) {
            if (firstRow < 0 || count < 0 || firstRow + count > rows || rowCodes.byteSize() < (long) count * rowBytes) {
                throw new IllegalArgumentException("rows " + firstRow + " + " + count + " of " + rows + " with "
                        + rowCodes.byteSize() + " code bytes");
            }
            if (count == 0) return;
            context.copyToDeviceNow(codes + (long) firstRow * rowBytes, rowCodes.asSlice(0, (long) count * rowBytes));
        }

        /** Copies the block scales, {@code ceil(rows / blockRows) × ceil(columns / blockColumns)}, row-major. */
        public void writeScales(float[] blockScales) {
            if (blockScales.length != (long) rowBlocks * columnBlocks) {
                throw new IllegalArgumentException(blockScales.length + " scales for " + rowBlocks + "x" + columnBlocks
                        + " blocks");
            }
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment host = arena.allocate(4L * blockScales.length, 16);
                MemorySegment.copy(blockScales, 0, host, ValueLayout.JAVA_FLOAT, 0, blockScales.length);
                context.copyToDeviceNow(scales, host);
            }
            scalesWritten = true;
        }

        /**
         * The weight, owning the memory from now on.
         *
         * @throws IllegalStateException when no scales were written
         */
        public Fp8Weight build() {
            if (!scalesWritten) throw new IllegalStateException("the FP8 weight's block scales were not written");
            return new Fp8Weight(this);
        }

        /** Releases the memory (after a failure). */
        public void discard() {
            context.free(codes); // and the scales after them
        }
    }

    @Override
    public String format() {
        return FORMAT;
    }

    @Override
    public int rows() {
        return rows;
    }

    @Override
    public int columns() {
        return columns;
    }

    /** Rows of a scale block. */
    public int blockRows() {
        return blockRows;
    }

    /** Columns of a scale block. */
    public int blockColumns() {
        return blockColumns;
    }

    @Override
    public long bytes() {
        return (long) rows * rowBytes + 4L * rowBlocks * columnBlocks;
    }

    @Override
    public void multiply(Tensor x, Tensor out) {
        checkOpen();
        CudaTensor in = CudaTensor.f32(x, context);
        CudaTensor o = CudaTensor.f32(out, context);
        int tokens = in.rowCount();
        if (in.rowLength() != columns || o.rowLength() != rows || o.rowCount() < tokens) {
            throw new IllegalArgumentException("cannot multiply " + in + " by an fp8 weight [" + rows + ", " + columns
                    + "] into " + o);
        }
        if (tokens == 0) return;
        if (rowBytes == columns && blockColumns % SkinnyPlan.CHUNK == 0
                && context.kernels().skinnyTakes(tokens, rows, columns, codes, "fp8")) {
            // A decode batch on the tensor cores: the codes read once, decoded to bf16 (exact) in registers, each
            // 64-column chunk's sums times its block's scale.
            DenseWeight.multiplyParts(context, in.pointer(), o.pointer(), tokens, rows, columns, (parts, ignored) ->
                    context.kernels().skinny("fp8", codes, scales, blockRows, blockColumns, parts[0], parts[1],
                            o.pointer(), rows, columns, tokens));
            return;
        }
        if (blockRows == Kernels.FP8_GEMV_BLOCK && blockColumns == Kernels.FP8_GEMV_BLOCK && rowBytes == columns
                && context.kernels().gemvFp8(codes, in.pointer(), o.pointer(), rows, columns, tokens)) {
            return;
        }
        QuantKernels kernels = context.quantKernels();
        if (tokens <= QuantKernels.GEMV_MAX_TOKENS) {
            kernels.fp8Gemv(codes, scales, in.pointer(), o.pointer(), rows, columns, rowBytes, blockRows, blockColumns,
                    columnBlocks, tokens);
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
        long[] tile = kernels.tiles((long) tileRows * columns, 2);
        for (int first = 0; first < rows; first += tileRows) {
            int count = Math.min(tileRows, rows - first);
            long product = o.pointer() + 4L * first;
            kernels.fp8DequantizeSplit(codes + (long) first * rowBytes, scales, first, rowBytes, columns, blockRows,
                    blockColumns, columnBlocks, count, tile[0], tile[1]);
            gemm(count, tokens, tile[0], parts[0], false, product);
            gemm(count, tokens, tile[0], parts[1], true, product);
            gemm(count, tokens, tile[1], parts[0], true, product);
        }
    }

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
        context.quantKernels().fp8GatherRows(codes, scales, deviceIds, o.pointer(), count, columns, rowBytes, blockRows,
                blockColumns, columnBlocks);
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
        return "fp8 [" + rows + ", " + columns + "] in blocks of " + blockRows + "x" + blockColumns;
    }
}
