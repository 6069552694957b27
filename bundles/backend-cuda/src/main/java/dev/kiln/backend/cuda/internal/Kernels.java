package dev.kiln.backend.cuda.internal;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import dev.kiln.backend.cuda.bindings.CudaDriver;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The kernels of {@code kernels.cu}, loaded in one module, each behind a method that knows its parameter list and
 * launch shape. Arguments are not checked here: the backend checks shapes before it calls.
 */
public final class Kernels implements AutoCloseable {
    /** Threads per block of the element-wise and row kernels. */
    static final int THREADS = 256;
    /** Tokens up to which a matrix product streams the weight once per warp instead of calling cuBLAS. */
    public static final int GEMV_MAX_TOKENS = 8;
    /** Threads per block of the token-specialised GEMV: one weight row per warp, small blocks spread over every SM. */
    static final int GEMV_THREADS = 128;
    /** Threads of the attention kernel (keys scored per tile); must match ATTENTION_THREADS in the source. */
    public static final int ATTENTION_THREADS = 256;
    /** Value dimensions per attention thread; must match ATTENTION_VALUES_PER_THREAD in the source. */
    public static final int ATTENTION_VALUES_PER_THREAD = 8;
    /** The most dynamic shared memory a kernel may use without opting in. */
    public static final int DEFAULT_SHARED_BYTES = 48 * 1024;
    private static final int MAX_GRID = 1 << 20;
    private static final int MAX_ARGUMENTS = 20;

    private final CudaContext context;
    private final CudaDriver driver;
    private final MemorySegment module;
    private final MemorySegment add, addBias, scale, siluMul, splitBf16, rmsNorm, embedBf16, embedF32, copyColumns,
            gatherRows, scatterAddRows, rotary, gemvBf16, gemvF32, writeKv, pagedAttention;
    /** {@code kiln_gemv_bf16_t1 .. _t8}: the vectorized bf16 product for 1 to 8 tokens. */
    private final MemorySegment[] gemvBf16Tokens = new MemorySegment[GEMV_MAX_TOKENS];
    private final ThreadLocal<Arguments> arguments = ThreadLocal.withInitial(Arguments::new);

    Kernels(CudaContext context, MemorySegment module) {
        this.context = context;
        this.driver = context.driver();
        this.module = module;
        add = driver.function(module, "kiln_add");
        addBias = driver.function(module, "kiln_add_bias");
        scale = driver.function(module, "kiln_scale");
        siluMul = driver.function(module, "kiln_silu_mul");
        splitBf16 = driver.function(module, "kiln_split_bf16");
        rmsNorm = driver.function(module, "kiln_rms_norm");
        embedBf16 = driver.function(module, "kiln_embed_bf16");
        embedF32 = driver.function(module, "kiln_embed_f32");
        copyColumns = driver.function(module, "kiln_copy_columns");
        gatherRows = driver.function(module, "kiln_gather_rows");
        scatterAddRows = driver.function(module, "kiln_scatter_add_rows");
        rotary = driver.function(module, "kiln_rotary");
        gemvBf16 = driver.function(module, "kiln_gemv_bf16");
        gemvF32 = driver.function(module, "kiln_gemv_f32");
        writeKv = driver.function(module, "kiln_write_kv");
        pagedAttention = driver.function(module, "kiln_paged_attention");
        for (int t = 1; t <= GEMV_MAX_TOKENS; t++) gemvBf16Tokens[t - 1] = driver.function(module, "kiln_gemv_bf16_t" + t);
    }

    /** The kernel names the module must define (checked by the compilation test without a GPU). */
    public static final String[] NAMES = {"kiln_add", "kiln_add_bias", "kiln_scale", "kiln_silu_mul", "kiln_split_bf16",
            "kiln_rms_norm", "kiln_embed_bf16", "kiln_embed_f32", "kiln_copy_columns", "kiln_gather_rows",
            "kiln_scatter_add_rows", "kiln_rotary", "kiln_gemv_bf16", "kiln_gemv_f32", "kiln_write_kv",
            "kiln_paged_attention", "kiln_gemv_bf16_t1", "kiln_gemv_bf16_t2", "kiln_gemv_bf16_t3", "kiln_gemv_bf16_t4",
            "kiln_gemv_bf16_t5", "kiln_gemv_bf16_t6", "kiln_gemv_bf16_t7", "kiln_gemv_bf16_t8"};

    /** {@code acc[i] += x[i]}. */
    public void add(long acc, long x, long n) {
        if (n == 0) return;
        args().ptr(acc).ptr(x).i64(n).launch(add, "kiln_add", blocks(n), 1, THREADS, 0);
    }

    /** {@code x[i] += bias[i % width]}. */
    public void addBias(long x, long bias, long n, int width) {
        if (n == 0) return;
        args().ptr(x).ptr(bias).i64(n).i32(width).launch(addBias, "kiln_add_bias", blocks(n), 1, THREADS, 0);
    }

    /** {@code x[i] *= factor}. */
    public void scale(long x, float factor, long n) {
        if (n == 0) return;
        args().ptr(x).f32(factor).i64(n).launch(scale, "kiln_scale", blocks(n), 1, THREADS, 0);
    }

    /** {@code out[i] = silu(gate[i]) * up[i]}. */
    public void siluMul(long gate, long up, long out, long n) {
        if (n == 0) return;
        args().ptr(gate).ptr(up).ptr(out).i64(n).launch(siluMul, "kiln_silu_mul", blocks(n), 1, THREADS, 0);
    }

    /** Splits f32 values into bf16 high and low parts. */
    public void splitBf16(long x, long hi, long lo, long n) {
        if (n == 0) return;
        args().ptr(x).ptr(hi).ptr(lo).i64(n).launch(splitBf16, "kiln_split_bf16", blocks(n), 1, THREADS, 0);
    }

    /** RMSNorm of {@code rows} rows of {@code n}. */
    public void rmsNorm(long x, long scale, float eps, long out, int rows, int n) {
        if (rows == 0) return;
        args().ptr(x).ptr(scale).f32(eps).ptr(out).i32(n).launch(rmsNorm, "kiln_rms_norm", rows, 1, THREADS, 0);
    }

    /** {@code out[t] = table[ids[t]]} for a bf16 or f32 table. */
    public void embed(boolean bf16, long table, long ids, long out, int count, int columns) {
        if (count == 0) return;
        args().ptr(table).ptr(ids).ptr(out).i32(columns)
                .launch(bf16 ? embedBf16 : embedF32, "kiln_embed", count, 1, THREADS, 0);
    }

    /** Copies a band of columns between row-major matrices. */
    public void copyColumns(long src, int srcRow, int srcOffset, long dst, int dstRow, int dstOffset, int width, int rows) {
        long n = (long) rows * width;
        if (n == 0) return;
        args().ptr(src).i32(srcRow).i32(srcOffset).ptr(dst).i32(dstRow).i32(dstOffset).i32(width).i64(n)
                .launch(copyColumns, "kiln_copy_columns", blocks(n), 1, THREADS, 0);
    }

    /** {@code dst[i] = src[rows[i]]}. */
    public void gatherRows(long src, long rows, long dst, int count, int n) {
        if (count == 0) return;
        args().ptr(src).ptr(rows).ptr(dst).i32(n).launch(gatherRows, "kiln_gather_rows", count, 1, THREADS, 0);
    }

    /** {@code dst[rows[i]] += scales[i] * src[i]}, rows in order. */
    public void scatterAddRows(long src, long rows, long scales, long dst, int n, int count) {
        if (count == 0 || n == 0) return;
        args().ptr(src).ptr(rows).ptr(scales).ptr(dst).i32(n).i32(count)
                .launch(scatterAddRows, "kiln_scatter_add_rows", (n + THREADS - 1) / THREADS, 1, THREADS, 0);
    }

    /** Rotates the rotary part of every head of {@code rows} rows. */
    public void rotary(long x, long positions, long cos, long sin, int rows, int rowLength, int heads, int headStride,
                       int offset, int half, boolean interleaved) {
        if (rows == 0) return;
        args().ptr(x).ptr(positions).ptr(cos).ptr(sin).i32(rowLength).i32(heads).i32(headStride).i32(offset).i32(half)
                .i32(interleaved ? 1 : 0).launch(rotary, "kiln_rotary", rows, 1, Math.min(THREADS, roundUp(heads * half)), 0);
    }

    /**
     * {@code out[t] = W · x[t]} for up to {@link #GEMV_MAX_TOKENS} tokens, W bf16 or f32 {@code [rows, columns]}:
     * aligned bf16 weights with whole 8-element chunks take the kernel specialised for the token count.
     */
    public void gemv(boolean bf16, long w, long x, long out, int rows, int columns, int tokens) {
        if (tokens == 0 || rows == 0) return;
        int perLoad = bf16 ? 8 : 4;
        boolean vectorized = columns % perLoad == 0 && w % 16 == 0 && x % 16 == 0;
        MemorySegment function = bf16 ? (vectorized ? gemvBf16Tokens[tokens - 1] : gemvBf16) : gemvF32;
        int threads = bf16 && vectorized ? GEMV_THREADS : THREADS;
        int warps = threads / 32;
        args().ptr(w).ptr(x).ptr(out).i32(rows).i32(columns).i32(tokens).i32(vectorized ? 1 : 0)
                .launch(function, "kiln_gemv", (rows + warps - 1) / warps, 1, threads, 0);
    }

    /** Writes the new tokens' keys (and values, when {@code value != 0}) into their cache slots. */
    public void writeKv(long key, long value, long keys, long values, long slots, int tokens, int kvHeads, int keyDim,
                        int valueDim, int blockSize) {
        if (tokens == 0) return;
        args().ptr(key).ptr(value).ptr(keys).ptr(values).ptr(slots).i32(kvHeads).i32(keyDim).i32(valueDim).i32(blockSize)
                .launch(writeKv, "kiln_write_kv", tokens, 1, THREADS, 0);
    }

    /** Dynamic shared memory of the attention kernel for a key width. */
    public static int attentionSharedBytes(int keyDim) {
        return ATTENTION_THREADS * Long.BYTES + ATTENTION_THREADS * Float.BYTES + 32 * Float.BYTES + keyDim * Float.BYTES;
    }

    /** Causal attention of every (token, head) over the paged cache. */
    public void pagedAttention(long query, long out, long keys, long values, long tokenSequence, long tokenPosition,
                               long tableStart, long tables, int tokens, int heads, int kvHeads, int keyDim,
                               int valueDim, int valueStride, int blockSize, float scale) {
        if (tokens == 0) return;
        args().ptr(query).ptr(out).ptr(keys).ptr(values).ptr(tokenSequence).ptr(tokenPosition).ptr(tableStart).ptr(tables)
                .i32(heads).i32(kvHeads).i32(keyDim).i32(valueDim).i32(valueStride).i32(blockSize).f32(scale)
                .launch(pagedAttention, "kiln_paged_attention", tokens, heads, ATTENTION_THREADS,
                        attentionSharedBytes(keyDim));
    }

    private static int blocks(long n) {
        return (int) Math.min(MAX_GRID, (n + THREADS - 1) / THREADS);
    }

    private static int roundUp(int threads) {
        return Math.max(32, (threads + 31) / 32 * 32);
    }

    private Arguments args() {
        context.bind();
        return arguments.get().reset();
    }

    @Override
    public void close() {
        driver.unloadModule(module);
    }

    /**
     * A kernel's argument list: each argument's value in an 8-byte slot and the {@code void*[]} that
     * {@code cuLaunchKernel} reads, which points at the slots. The driver copies the values during the launch call,
     * so one buffer per thread serves every launch.
     */
    private final class Arguments {
        private final MemorySegment values = Arena.global().allocate(8L * MAX_ARGUMENTS, 8);
        private final MemorySegment pointers = Arena.global().allocate(ADDRESS, MAX_ARGUMENTS);
        private int count;

        Arguments() {
            for (int i = 0; i < MAX_ARGUMENTS; i++) pointers.setAtIndex(ADDRESS, i, values.asSlice(8L * i, 8));
        }

        Arguments reset() {
            count = 0;
            return this;
        }

        Arguments ptr(long pointer) {
            values.set(JAVA_LONG, 8L * count++, pointer);
            return this;
        }

        Arguments i64(long value) {
            values.set(JAVA_LONG, 8L * count++, value);
            return this;
        }

        Arguments i32(int value) {
            values.set(JAVA_INT, 8L * count++, value);
            return this;
        }

        Arguments f32(float value) {
            values.set(JAVA_FLOAT, 8L * count++, value);
            return this;
        }

        void launch(MemorySegment function, String name, int gridX, int gridY, int block, int sharedBytes) {
            driver.launch(function, gridX, gridY, 1, block, 1, 1, sharedBytes, context.stream(), pointers, name);
        }
    }
}
