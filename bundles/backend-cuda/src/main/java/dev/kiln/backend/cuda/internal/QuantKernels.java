package dev.kiln.backend.cuda.internal;

import dev.kiln.backend.cuda.bindings.CudaDriver;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * The kernels of the quantized weight formats ({@value #SOURCE}: the weight-only integer formats and FP8 blocks), loaded
 * by {@link CudaContext} at the first quantized weight, each behind a method that knows its
 * parameter list and launch shape; and the scratch the formats' prefill products dequantize into. Launches are held by
 * the context's {@link StepRecorder} like those of {@link Kernels}, so they take part in its graphs, and made as
 * programmatic dependent launches as theirs are. Arguments are not
 * checked here: {@link QuantizedWeight} and {@link Fp8Weight} check shapes before they call.
 */
public final class QuantKernels implements AutoCloseable {
    /** The kernel source, a resource next to {@link KernelCompiler}. */
    public static final String SOURCE = "quant_kernels.cu";
    /** Tokens up to which a product streams the weight once (QUANT_MAX_TOKENS in the source). */
    public static final int GEMV_MAX_TOKENS = 8;
    /** Threads per block of the token-specialised GEMVs (QUANT_GEMV_THREADS in the source). */
    static final int GEMV_THREADS = 128;
    private static final int GEMV_WARPS = GEMV_THREADS / 32;
    /** Threads per block of the any-shape GEMVs (one row per warp) and of the element-wise kernels. */
    private static final int THREADS = 256;
    /** Columns per lane step of the token-specialised GEMVs (QUANT_STEP in the source). */
    static final int STEP = 16;
    /**
     * Weight elements one prefill tile holds: the weight is dequantized into bf16 tiles of whole rows this large
     * (32 MB each) rather than all at once, so a 150k-row vocabulary projection needs no scratch of its own size.
     */
    static final long TILE_ELEMENTS = 1L << 24;
    /** The most rows of one tile: the dequantizing kernels put a tile's rows on the grid's y dimension. */
    static final int MAX_TILE_ROWS = 65_535;
    private static final int MAX_GRID = 1 << 20;

    /** The kernel names the source's units must define (checked by the compilation test without a GPU). */
    public static final String[] NAMES = names();

    private final CudaContext context;
    private final CudaDriver driver;
    private final KernelModules modules;
    private final MemorySegment[] int8Gemv = new MemorySegment[GEMV_MAX_TOKENS];
    private final MemorySegment[] int8GemvSplit = new MemorySegment[GEMV_MAX_TOKENS];
    private final MemorySegment[] int4Gemv = new MemorySegment[GEMV_MAX_TOKENS];
    private final MemorySegment[] int4GemvSplit = new MemorySegment[GEMV_MAX_TOKENS];
    private final MemorySegment[] fp8Gemv = new MemorySegment[GEMV_MAX_TOKENS];
    private final MemorySegment[] fp8GemvSplit = new MemorySegment[GEMV_MAX_TOKENS];
    private final MemorySegment int8GemvAnyShape, int4GemvAnyShape, int8CodesBf16, int8ScaleProduct, int4DequantizeSplit,
            int8GatherRows, int4GatherRows, fp8GemvAnyShape, fp8DequantizeSplit, fp8GatherRows;
    private final int multiprocessors;
    private final ThreadLocal<LaunchArguments> arguments;
    private long tiles;
    private long tileBytes;

    QuantKernels(CudaContext context, KernelModules modules) {
        this.context = context;
        this.driver = context.driver();
        this.modules = modules;
        this.arguments = ThreadLocal.withInitial(() -> new LaunchArguments(context));
        this.multiprocessors = context.properties().multiprocessors();
        for (int t = 1; t <= GEMV_MAX_TOKENS; t++) {
            int8Gemv[t - 1] = modules.function("kiln_int8_gemv_t" + t);
            int8GemvSplit[t - 1] = modules.function("kiln_int8_gemv_split_t" + t);
            int4Gemv[t - 1] = modules.function("kiln_int4_gemv_t" + t);
            int4GemvSplit[t - 1] = modules.function("kiln_int4_gemv_split_t" + t);
            fp8Gemv[t - 1] = modules.function("kiln_fp8_gemv_t" + t);
            fp8GemvSplit[t - 1] = modules.function("kiln_fp8_gemv_split_t" + t);
        }
        int8GemvAnyShape = modules.function("kiln_int8_gemv");
        int4GemvAnyShape = modules.function("kiln_int4_gemv");
        int8CodesBf16 = modules.function("kiln_int8_codes_bf16");
        int8ScaleProduct = modules.function("kiln_int8_scale_product");
        int4DequantizeSplit = modules.function("kiln_int4_dequantize_split");
        int8GatherRows = modules.function("kiln_int8_gather_rows");
        int4GatherRows = modules.function("kiln_int4_gather_rows");
        fp8GemvAnyShape = modules.function("kiln_fp8_gemv");
        fp8DequantizeSplit = modules.function("kiln_fp8_dequantize_split");
        fp8GatherRows = modules.function("kiln_fp8_gather_rows");
    }

    private static String[] names() {
        List<String> names = new ArrayList<>();
        for (String format : new String[] {"int8", "int4", "fp8"}) {
            for (String kind : new String[] {"", "split_"}) {
                for (int t = 1; t <= GEMV_MAX_TOKENS; t++) names.add("kiln_" + format + "_gemv_" + kind + "t" + t);
            }
        }
        names.addAll(List.of("kiln_int8_gemv", "kiln_int4_gemv", "kiln_int8_codes_bf16",
                "kiln_int8_scale_product", "kiln_int4_dequantize_split", "kiln_int8_gather_rows", "kiln_int4_gather_rows",
                "kiln_fp8_gemv", "kiln_fp8_dequantize_split", "kiln_fp8_gather_rows"));
        return names.toArray(String[]::new);
    }

    /**
     * Weight rows each warp of a token-specialised GEMV computes (GemvShape::ROWS in the source): 8 from 4 tokens on,
     * where multiply-adds dominate and 8 rows halve the activation loads per multiply-add; 4 below and when split.
     */
    static int rowsPerWarp(int tokens, boolean split) {
        return split || tokens < 4 ? 4 : 8;
    }

    /**
     * Whether a product takes the split kernel, whose four warps share one group of rows: when the row groups alone
     * would leave some SM without a block (a 1536-row matrix is 96 blocks of 16 rows on an H100's 132 SMs), which
     * measured 1.2 to 1.6 times faster there and slower on matrices of many rows.
     */
    boolean splits(int rows, int tokens) {
        int perBlock = GEMV_WARPS * rowsPerWarp(tokens, false);
        return (rows + perBlock - 1) / perBlock < multiprocessors;
    }

    private int gemvBlocks(int rows, int tokens, boolean split) {
        int perBlock = split ? rowsPerWarp(tokens, true) : GEMV_WARPS * rowsPerWarp(tokens, false);
        return (rows + perBlock - 1) / perBlock;
    }

    /** Whether the token-specialised GEMV can run: whole 16-column steps and 16-byte aligned activation rows. */
    private static boolean vectorized(long x, int columns) {
        return columns % STEP == 0 && x % 16 == 0;
    }

    /**
     * {@code out[t] = W · x[t]} for up to {@link #GEMV_MAX_TOKENS} tokens, W INT8 {@code [rows, columns]} in rows of
     * {@code stride} bytes with one scale per row.
     */
    public void int8Gemv(long codes, long scales, long x, long out, int rows, int columns, int stride, int tokens) {
        if (tokens == 0 || rows == 0) return;
        if (vectorized(x, columns)) {
            boolean split = splits(rows, tokens);
            MemorySegment function = (split ? int8GemvSplit : int8Gemv)[tokens - 1];
            args().ptr(codes).ptr(scales).ptr(x).ptr(out).i32(rows).i32(columns).i32(stride)
                    .launch(function, "kiln_int8_gemv_t", gemvBlocks(rows, tokens, split), 1, GEMV_THREADS);
        } else {
            args().ptr(codes).ptr(scales).ptr(x).ptr(out).i32(rows).i32(columns).i32(stride).i32(tokens)
                    .launch(int8GemvAnyShape, "kiln_int8_gemv", (rows + THREADS / 32 - 1) / (THREADS / 32), 1, THREADS);
        }
    }

    /**
     * {@code out[t] = W · x[t]} for up to {@link #GEMV_MAX_TOKENS} tokens, W INT4 {@code [rows, columns]} in rows of
     * {@code strideBytes} with {@code groups} scales per row, each for {@code groupSize} columns (a power of two, at
     * least 16).
     */
    public void int4Gemv(long codes, long scales, long x, long out, int rows, int columns, int strideBytes, int groups,
                         int groupSize, int tokens) {
        if (tokens == 0 || rows == 0) return;
        if (vectorized(x, columns)) {
            boolean split = splits(rows, tokens);
            MemorySegment function = (split ? int4GemvSplit : int4Gemv)[tokens - 1];
            int groupShift = Integer.numberOfTrailingZeros(groupSize / STEP);
            args().ptr(codes).ptr(scales).ptr(x).ptr(out).i32(rows).i32(columns).i32(strideBytes).i32(groups).i32(groupShift)
                    .launch(function, "kiln_int4_gemv_t", gemvBlocks(rows, tokens, split), 1, GEMV_THREADS);
        } else {
            args().ptr(codes).ptr(scales).ptr(x).ptr(out).i32(rows).i32(columns).i32(strideBytes).i32(groups)
                    .i32(groupSize).i32(tokens)
                    .launch(int4GemvAnyShape, "kiln_int4_gemv", (rows + THREADS / 32 - 1) / (THREADS / 32), 1, THREADS);
        }
    }

    /**
     * Whether FP8 blocks of that many columns suit the token-specialised GEMV: a whole number of 16-column steps, a power
     * of two of them (the kernel finds a step's block by a shift), as DeepSeek's 128 columns are.
     */
    static boolean stepAlignedBlocks(int blockColumns) {
        return blockColumns % STEP == 0 && Integer.bitCount(blockColumns / STEP) == 1;
    }

    /**
     * {@code out[t] = W · x[t]} for up to {@link #GEMV_MAX_TOKENS} tokens, W FP8 e4m3 {@code [rows, columns]} in rows
     * of {@code stride} bytes, one scale per block of {@code blockRows × blockColumns} elements, {@code blocksPerRow}
     * scales per row of blocks.
     */
    public void fp8Gemv(long codes, long scales, long x, long out, int rows, int columns, int stride, int blockRows,
                        int blockColumns, int blocksPerRow, int tokens) {
        if (tokens == 0 || rows == 0) return;
        if (vectorized(x, columns) && stepAlignedBlocks(blockColumns)) {
            boolean split = splits(rows, tokens);
            MemorySegment function = (split ? fp8GemvSplit : fp8Gemv)[tokens - 1];
            int blockShift = Integer.numberOfTrailingZeros(blockColumns / STEP);
            args().ptr(codes).ptr(scales).ptr(x).ptr(out).i32(rows).i32(columns).i32(stride).i32(blockRows)
                    .i32(blocksPerRow).i32(blockShift)
                    .launch(function, "kiln_fp8_gemv_t", gemvBlocks(rows, tokens, split), 1, GEMV_THREADS);
        } else {
            args().ptr(codes).ptr(scales).ptr(x).ptr(out).i32(rows).i32(columns).i32(stride).i32(blockRows)
                    .i32(blockColumns).i32(blocksPerRow).i32(tokens)
                    .launch(fp8GemvAnyShape, "kiln_fp8_gemv", (rows + THREADS / 32 - 1) / (THREADS / 32), 1, THREADS);
        }
    }

    /**
     * Rows {@code firstRow ..} of an FP8 weight ({@code codes} at that row's address, {@code scales} the whole weight's)
     * dequantized and split into bf16 high and low parts, two tiles {@code [rows, columns]}.
     */
    public void fp8DequantizeSplit(long codes, long scales, int firstRow, int stride, int columns, int blockRows,
                                   int blockColumns, int blocksPerRow, int rows, long hi, long lo) {
        if (rows == 0) return;
        args().ptr(codes).ptr(scales).i32(firstRow).i32(stride).i32(columns).i32(blockRows).i32(blockColumns)
                .i32(blocksPerRow).ptr(hi).ptr(lo)
                .launch(fp8DequantizeSplit, "kiln_fp8_dequantize_split", columnBlocks(columns), rows, THREADS);
    }

    /** {@code out[i] = W[ids[i]]} dequantized, for an FP8 weight. */
    public void fp8GatherRows(long codes, long scales, long ids, long out, int count, int columns, int stride,
                              int blockRows, int blockColumns, int blocksPerRow) {
        if (count == 0) return;
        args().ptr(codes).ptr(scales).ptr(ids).ptr(out).i32(columns).i32(stride).i32(blockRows).i32(blockColumns)
                .i32(blocksPerRow)
                .launch(fp8GatherRows, "kiln_fp8_gather_rows", count, 1, THREADS);
    }

    /** Rows of an INT8 weight (codes at the first row's address) as bf16 codes {@code [rows, columns]} in a tile. */
    public void int8CodesBf16(long codes, int stride, int columns, int rows, long tile) {
        if (rows == 0) return;
        args().ptr(codes).i32(stride).i32(columns).ptr(tile)
                .launch(int8CodesBf16, "kiln_int8_codes_bf16", columnBlocks(columns), rows, THREADS);
    }

    /** {@code product[t, r] *= scales[r]} over {@code n} elements of a product with rows of {@code rows}. */
    public void int8ScaleProduct(long product, long scales, long n, int rows) {
        if (n == 0) return;
        args().ptr(product).ptr(scales).i64(n).i32(rows)
                .launch(int8ScaleProduct, "kiln_int8_scale_product", blocks(n), 1, THREADS);
    }

    /**
     * Rows of an INT4 weight (codes and scales at the first row's addresses) dequantized and split into bf16 high and
     * low parts, two tiles {@code [rows, columns]}.
     */
    public void int4DequantizeSplit(long codes, long scales, int strideBytes, int columns, int groups, int groupSize,
                                    int rows, long hi, long lo) {
        if (rows == 0) return;
        args().ptr(codes).ptr(scales).i32(strideBytes).i32(columns).i32(groups).i32(groupSize).ptr(hi).ptr(lo)
                .launch(int4DequantizeSplit, "kiln_int4_dequantize_split", columnBlocks(columns), rows, THREADS);
    }

    /** {@code out[i] = W[ids[i]]} dequantized, for an INT8 weight. */
    public void int8GatherRows(long codes, long scales, long ids, long out, int count, int columns, int stride) {
        if (count == 0) return;
        args().ptr(codes).ptr(scales).ptr(ids).ptr(out).i32(columns).i32(stride)
                .launch(int8GatherRows, "kiln_int8_gather_rows", count, 1, THREADS);
    }

    /** {@code out[i] = W[ids[i]]} dequantized, for an INT4 weight. */
    public void int4GatherRows(long codes, long scales, long ids, long out, int count, int columns, int strideBytes,
                               int groups, int groupSize) {
        if (count == 0) return;
        args().ptr(codes).ptr(scales).ptr(ids).ptr(out).i32(columns).i32(strideBytes).i32(groups).i32(groupSize)
                .launch(int4GatherRows, "kiln_int4_gather_rows", count, 1, THREADS);
    }

    /** Rows per prefill tile of a weight: whole rows filling {@link #TILE_ELEMENTS}, at least one. */
    static int tileRows(int rows, int columns) {
        long fit = Math.max(1, TILE_ELEMENTS / columns);
        return (int) Math.min(Math.min(rows, MAX_TILE_ROWS), fit);
    }

    /**
     * {@code count} adjacent bf16 tiles of {@code elements} each, grown (never shrunk) to the largest asked for.
     * Products run one after another on the stream, so one set of tiles serves every weight.
     */
    synchronized long[] tiles(long elements, int count) {
        long bytes = 2 * elements * count;
        if (bytes > tileBytes) {
            if (tiles != 0) {
                context.free(tiles);
                tiles = 0;
                tileBytes = 0;
            }
            tiles = context.allocate(bytes);
            tileBytes = bytes;
        }
        long[] out = new long[count];
        for (int i = 0; i < count; i++) out[i] = tiles + 2 * elements * i;
        return out;
    }

    private static int columnBlocks(int columns) {
        return Math.min(MAX_GRID, (columns + THREADS - 1) / THREADS);
    }

    private static int blocks(long n) {
        return (int) Math.min(MAX_GRID, (n + THREADS - 1) / THREADS);
    }

    private LaunchArguments args() {
        return arguments.get().reset();
    }

    /** Unloads the modules and frees the tiles. */
    @Override
    public synchronized void close() {
        if (tiles != 0) context.free(tiles);
        tiles = 0;
        tileBytes = 0;
        modules.close();
    }
}
