package dev.kiln.quant.fp8.internal;

import static dev.kiln.quant.fp8.internal.E4m3.CHUNK;
import static dev.kiln.quant.fp8.internal.E4m3.F;
import static dev.kiln.quant.fp8.internal.E4m3.L;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cpu.CpuTensor;
import dev.kiln.backend.cpu.WorkerPool;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * A weight {@code [rows, columns]} of FP8 e4m3 codes with one f32 scale per block of {@code blockRows ×
 * blockColumns} elements (edge blocks may be partial): {@code W[r, c] = code[r, c] · scale[r / blockRows,
 * c / blockColumns]}, the layout of DeepSeek-V3/R1's {@code weight} and {@code weight_scale_inv}.
 *
 * <p>The codes stay where they are (memory-mapped from the checkpoint, or in memory this weight owns when it was
 * quantized on load) and are decoded inside the kernels; the weight is never widened to f32 as a whole. Two
 * kernels compute the same sums:
 * <ul>
 *   <li>few activation rows (decode): stream the codes once, 4·L codes per int-vector load decoded as four float
 *       vectors (see {@link ColumnOrder}). For one or two tokens they go straight into the accumulators of two rows,
 *       each block's sums scaled once when the block ends; for a few tokens each pair of rows is decoded once, scaled,
 *       into an L1-resident buffer and dotted with the tokens four at a time;</li>
 *   <li>many rows (prefill): per chunk of weight rows and per block of columns, decode the block with its scale
 *       into an L1-resident f32 buffer once and reuse it for every token, with a register-tiled microkernel over
 *       transposed activation panels (no horizontal reductions).</li>
 * </ul>
 */
public final class Fp8BlockWeight implements Weight {
    /** From this many activation rows on, decoding a block once for every token beats re-streaming the codes. */
    static final int GEMM_MIN_TOKENS = 16;
    /** Up to this many tokens, each streams the codes itself (measured: two passes beat one decode into a buffer). */
    private static final int STREAMED_TOKENS = 2;
    /** Tokens per panel of transposed activations: two vectors. */
    private static final int NR = 2 * L;
    /** Weight rows per microkernel tile. */
    private static final int MR = 8;
    /** Weight rows per GEMM work item. */
    private static final int MC = 64;

    private final MemorySegment codes;
    private final float[] scales;
    private final int rows;
    private final int columns;
    private final int blockRows;
    private final int blockColumns;
    private final int columnBlocks;
    private final WorkerPool pool;
    private final KernelScratch scratch;
    private final Arena owner;
    private final ColumnOrder order;

    /**
     * @param codes        {@code rows × columns} e4m3 codes, row-major
     * @param scales       {@code ceil(rows / blockRows) × ceil(columns / blockColumns)} block scales, row-major
     * @param owner        the arena holding {@code codes} when this weight owns them (closed with it), or
     *                     {@code null} when they belong to a checkpoint mapping
     * @throws IllegalArgumentException when the sizes disagree
     */
    public Fp8BlockWeight(MemorySegment codes, float[] scales, int rows, int columns, int blockRows, int blockColumns,
                          WorkerPool pool, KernelScratch scratch, Arena owner) {
        if (rows < 1 || columns < 1 || blockRows < 1 || blockColumns < 1) {
            throw new IllegalArgumentException("invalid FP8 weight geometry " + rows + "x" + columns + " in blocks of "
                    + blockRows + "x" + blockColumns);
        }
        if (codes.byteSize() != (long) rows * columns) {
            throw new IllegalArgumentException(codes.byteSize() + " code bytes for " + rows + "x" + columns);
        }
        int rowBlocks = ceilDiv(rows, blockRows);
        this.columnBlocks = ceilDiv(columns, blockColumns);
        if (scales.length != (long) rowBlocks * columnBlocks) {
            throw new IllegalArgumentException(scales.length + " scales for " + rowBlocks + "x" + columnBlocks + " blocks");
        }
        this.codes = codes;
        this.scales = scales;
        this.rows = rows;
        this.columns = columns;
        this.blockRows = blockRows;
        this.blockColumns = blockColumns;
        this.pool = pool;
        this.scratch = scratch;
        this.owner = owner;
        this.order = new ColumnOrder(columns, blockColumns);
    }

    static int ceilDiv(int a, int b) {
        return Math.ceilDiv(a, b);
    }

    @Override
    public String format() {
        return "fp8";
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
        return codes.byteSize() + (long) scales.length * Float.BYTES;
    }

    /** The scale of the block holding {@code (row, block column)}. */
    private float scale(int row, int block) {
        return scales[(row / blockRows) * columnBlocks + block];
    }

    @Override
    public void multiply(Tensor x, Tensor out) {
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
        float[] oa = result.array();
        if (tokens >= GEMM_MIN_TOKENS) {
            gemm(in.array(), in.offset(), tokens, oa, result.offset());
            return;
        }
        float[] xp = scratch.callerBuffer(0, (long) tokens * columns);
        order.permute(in.array(), in.offset(), tokens, xp, 0);
        if (tokens <= STREAMED_TOKENS) {
            // Each token streams the codes once more, decoding them in registers: for one or two tokens that beats
            // decoding every row into a buffer first.
            int pairs = ceilDiv(rows, 2);
            for (int t = 0; t < tokens; t++) {
                int xOffset = t * columns, outOffset = result.offset() + t * rows;
                pool.parallelFor(pairs, grain(pairs), (worker, from, to) -> {
                    for (int p = from; p < to; p++) rows2x1(xp, xOffset, p * 2, oa, outOffset);
                });
            }
        } else {
            int pairs = ceilDiv(rows, 2);
            pool.parallelFor(pairs, grain(pairs), (worker, from, to) -> {
                float[] decoded = scratch.workerBuffer(worker, 0, 2L * columns);
                for (int p = from; p < to; p++) rows2AllTokens(2 * p, xp, tokens, decoded, oa, result.offset());
            });
        }
    }

    @Override
    public void gatherRows(int[] ids, Tensor out) {
        CpuTensor result = CpuTensor.f32(out);
        if (result.rowLength() != columns || result.rowCount() < ids.length) {
            throw new IllegalArgumentException("output " + Arrays.toString(result.shape()) + " cannot hold "
                    + ids.length + " rows of " + columns);
        }
        float[] dst = result.array();
        for (int t = 0; t < ids.length; t++) {
            int id = ids[t];
            if (id < 0 || id >= rows) throw new IndexOutOfBoundsException("row " + id + " of a " + rows + "-row weight");
            int o = result.rowOffset(t);
            for (int c = 0; c < columns; c++) dst[o + c] = code((long) id * columns + c) * scale(id, c / blockColumns);
        }
    }

    /** Releases the codes when this weight owns them. */
    @Override
    public void close() {
        if (owner != null) owner.close();
    }

    /** Work items grouped so that each thread gets about eight chunks. */
    private int grain(int items) {
        return Math.max(1, items / (pool.threads() * 8));
    }

    /**
     * One token (x in visiting order, from {@code xOffset}) against rows r and r+1 (the second repeats the first at the end of an odd
     * row count, and its result is written again). Each block's sums are scaled once, when the block ends. Two
     * rows, not more: a larger body makes C2 stop inlining the Vector API calls, and boxed vectors are slow.
     */
    private void rows2x1(float[] x, int xOffset, int r, float[] out, int outOffset) {
        int r1 = Math.min(r + 1, rows - 1);
        long b0 = (long) r * columns, b1 = (long) r1 * columns;
        MemorySegment w = codes;
        FloatVector t0 = FloatVector.zero(F), t1 = FloatVector.zero(F);
        float s0 = 0, s1 = 0;
        for (int b = 0; b < columnBlocks; b++) {
            int c0 = b * blockColumns;
            int c1 = Math.min(columns, c0 + blockColumns);
            int vectorEnd = ColumnOrder.vectorEnd(c0, c1);
            FloatVector a0 = FloatVector.zero(F), a1 = FloatVector.zero(F);
            for (int c = c0; c < vectorEnd; c += CHUNK) {
                IntVector v0 = E4m3.loadChunk(w, b0 + c), v1 = E4m3.loadChunk(w, b1 + c);
                for (int k = 0; k < 4; k++) {
                    FloatVector xv = FloatVector.fromArray(F, x, xOffset + c + k * L);
                    a0 = E4m3.decodeChunkPart(v0, k).fma(xv, a0);
                    a1 = E4m3.decodeChunkPart(v1, k).fma(xv, a1);
                }
            }
            float q0 = scale(r, b), q1 = scale(r1, b);
            t0 = a0.fma(FloatVector.broadcast(F, q0), t0);
            t1 = a1.fma(FloatVector.broadcast(F, q1), t1);
            if (vectorEnd < c1) {
                float e0 = 0, e1 = 0;
                for (int c = vectorEnd; c < c1; c++) {
                    e0 += x[xOffset + c] * code(b0 + c);
                    e1 += x[xOffset + c] * code(b1 + c);
                }
                s0 += e0 * q0;
                s1 += e1 * q1;
            }
        }
        out[outOffset + r] = t0.reduceLanes(VectorOperators.ADD) + s0;
        out[outOffset + r1] = t1.reduceLanes(VectorOperators.ADD) + s1;
    }

    /**
     * Rows r and r+1 (the second repeats the first at the end of an odd row count) against every token (x in
     * visiting order): each row is decoded once, scaled, into an L1-resident buffer, then dotted with the tokens
     * four at a time. Decoding and dotting are kept in separate small loops so that C2 compiles every Vector API
     * call into plain vector instructions (a larger body exhausts its inlining budget, and boxed vectors are slow).
     */
    private void rows2AllTokens(int r, float[] x, int tokens, float[] decoded, float[] out, int outOffset) {
        int r1 = Math.min(r + 1, rows - 1);
        for (int b = 0; b < columnBlocks; b++) {
            int k0 = b * blockColumns;
            int kc = Math.min(blockColumns, columns - k0);
            decodeBlock(r, b, k0, kc, decoded, k0);
            decodeBlock(r1, b, k0, kc, decoded, columns + k0);
        }
        for (int t = 0; t < tokens; t += 4) dot2x4(decoded, x, t, Math.min(4, tokens - t), r, r1, out, outOffset);
    }

    /**
     * {@code out[t+i, r] = w0 · x[t+i]} and {@code out[t+i, r1] = w1 · x[t+i]} for {@code i < valid} (at most four;
     * missing tokens repeat the last valid one and are not written), with the two decoded rows at 0 and
     * {@code columns} of {@code w}: eight independent accumulators keep the FMA units busy.
     */
    private void dot2x4(float[] w, float[] x, int t, int valid, int r, int r1, float[] out, int outOffset) {
        int n = columns;
        int x0 = t * n;
        int x1 = (t + Math.min(1, valid - 1)) * n;
        int x2 = (t + Math.min(2, valid - 1)) * n;
        int x3 = (t + Math.min(3, valid - 1)) * n;
        int vectorEnd = n / L * L;
        FloatVector a00 = FloatVector.zero(F), a01 = FloatVector.zero(F), a02 = FloatVector.zero(F), a03 = FloatVector.zero(F);
        FloatVector a10 = FloatVector.zero(F), a11 = FloatVector.zero(F), a12 = FloatVector.zero(F), a13 = FloatVector.zero(F);
        for (int c = 0; c < vectorEnd; c += L) {
            FloatVector w0 = FloatVector.fromArray(F, w, c), w1 = FloatVector.fromArray(F, w, n + c);
            FloatVector xv = FloatVector.fromArray(F, x, x0 + c);
            a00 = w0.fma(xv, a00);
            a10 = w1.fma(xv, a10);
            xv = FloatVector.fromArray(F, x, x1 + c);
            a01 = w0.fma(xv, a01);
            a11 = w1.fma(xv, a11);
            xv = FloatVector.fromArray(F, x, x2 + c);
            a02 = w0.fma(xv, a02);
            a12 = w1.fma(xv, a12);
            xv = FloatVector.fromArray(F, x, x3 + c);
            a03 = w0.fma(xv, a03);
            a13 = w1.fma(xv, a13);
        }
        float s00 = a00.reduceLanes(VectorOperators.ADD), s01 = a01.reduceLanes(VectorOperators.ADD);
        float s02 = a02.reduceLanes(VectorOperators.ADD), s03 = a03.reduceLanes(VectorOperators.ADD);
        float s10 = a10.reduceLanes(VectorOperators.ADD), s11 = a11.reduceLanes(VectorOperators.ADD);
        float s12 = a12.reduceLanes(VectorOperators.ADD), s13 = a13.reduceLanes(VectorOperators.ADD);
        for (int c = vectorEnd; c < n; c++) {
            float w0 = w[c], w1 = w[n + c];
            s00 += w0 * x[x0 + c];
            s01 += w0 * x[x1 + c];
            s02 += w0 * x[x2 + c];
            s03 += w0 * x[x3 + c];
            s10 += w1 * x[x0 + c];
            s11 += w1 * x[x1 + c];
            s12 += w1 * x[x2 + c];
            s13 += w1 * x[x3 + c];
        }
        float[] first = {s00, s01, s02, s03};
        float[] second = {s10, s11, s12, s13};
        for (int i = 0; i < valid; i++) {
            int o = outOffset + (t + i) * rows;
            out[o + r] = first[i];
            out[o + r1] = second[i];
        }
    }

    private float code(long index) {
        return E4m3.toFloat(codes.get(ValueLayout.JAVA_BYTE, index));
    }

    /**
     * {@code outᵀ = W · xᵀ} for many tokens: x is transposed once into panels of {@link #NR} tokens, then each
     * work item of {@link #MC} weight rows decodes one column block at a time (scale applied) into a per-thread
     * buffer and runs the {@code MR × NR} microkernel over every panel.
     */
    private void gemm(float[] x, int xOffset, int tokens, float[] out, int outOffset) {
        int panels = ceilDiv(tokens, NR);
        int paddedTokens = panels * NR;
        float[] xt = scratch.callerBuffer(0, (long) panels * columns * NR);
        pool.parallelFor(panels, 1, (worker, from, to) -> {
            for (int p = from; p < to; p++) transposePanel(x, xOffset, tokens, p, xt);
        });
        int items = ceilDiv(rows, MC);
        pool.parallelFor(items, 1, (worker, from, to) -> {
            float[] w = scratch.workerBuffer(worker, 0, (long) MC * blockColumns);
            float[] c = scratch.workerBuffer(worker, 1, (long) MC * paddedTokens);
            for (int item = from; item < to; item++) {
                chunk(item * MC, Math.min(MC, rows - item * MC), xt, panels, tokens, paddedTokens, w, c, out, outOffset);
            }
        });
    }

    /**
     * Panel p of xᵀ with columns in visiting order: {@code xt[p·columns·NR + q·width + j] = x[p·NR + j, natural(q)]},
     * zero beyond the last token.
     */
    private void transposePanel(float[] x, int xOffset, int tokens, int p, float[] xt) {
        int width = panelWidth(tokens, p);
        int base = p * columns * NR;
        for (int j = 0; j < width; j++) {
            int t = p * NR + j;
            if (t < tokens) {
                int src = xOffset + t * columns;
                for (int q = 0; q < columns; q++) xt[base + q * width + j] = x[src + order.natural(q)];
            } else {
                for (int k = 0; k < columns; k++) xt[base + k * width + j] = 0f;
            }
        }
    }

    /** The last panel is one vector wide when the tokens left fit in one, sparing half the work on padding. */
    private static int panelWidth(int tokens, int panel) {
        return tokens - panel * NR <= L ? L : NR;
    }

    private void chunk(int r0, int count, float[] xt, int panels, int tokens, int paddedTokens, float[] w, float[] c,
                       float[] out, int outOffset) {
        int paddedRows = ceilDiv(count, MR) * MR;
        Arrays.fill(c, 0, paddedRows * paddedTokens, 0f);
        for (int b = 0; b < columnBlocks; b++) {
            int k0 = b * blockColumns;
            int kc = Math.min(blockColumns, columns - k0);
            for (int i = 0; i < count; i++) decodeBlock(r0 + i, b, k0, kc, w, i * kc);
            Arrays.fill(w, count * kc, paddedRows * kc, 0f);
            for (int p = 0; p < panels; p++) {
                int width = panelWidth(tokens, p);
                int xBase = p * columns * NR + k0 * width;
                for (int rt = 0; rt < paddedRows; rt += MR) {
                    int cBase = rt * paddedTokens + p * NR;
                    if (width == NR) kernel8x2(w, rt * kc, kc, xt, xBase, c, cBase, paddedTokens);
                    else kernel8x1(w, rt * kc, kc, xt, xBase, c, cBase, paddedTokens);
                }
            }
        }
        for (int t = 0; t < tokens; t++) {
            int dst = outOffset + t * rows + r0;
            for (int i = 0; i < count; i++) out[dst + i] = c[i * paddedTokens + t];
        }
    }

    /** Decodes row {@code row}'s part of column block {@code b}, scaled, into dst in visiting order. */
    private void decodeBlock(int row, int b, int k0, int kc, float[] dst, int dstOffset) {
        float q = scale(row, b);
        FloatVector qv = FloatVector.broadcast(F, q);
        long base = (long) row * columns;
        int vectorEnd = ColumnOrder.vectorEnd(k0, k0 + kc);
        for (int c = k0; c < vectorEnd; c += CHUNK) {
            IntVector v = E4m3.loadChunk(codes, base + c);
            for (int k = 0; k < 4; k++) E4m3.decodeChunkPart(v, k).mul(qv).intoArray(dst, dstOffset + c - k0 + k * L);
        }
        for (int c = vectorEnd; c < k0 + kc; c++) dst[dstOffset + c - k0] = code(base + c) * q;
    }

    /** Adds an 8-row × 2-vector tile of {@code W · xᵀ} over {@code kc} columns to {@code c}. */
    private static void kernel8x2(float[] w, int wOff, int kc, float[] xt, int xOff, float[] c, int cOff, int ldc) {
        FloatVector c00 = FloatVector.fromArray(F, c, cOff), c01 = FloatVector.fromArray(F, c, cOff + L);
        FloatVector c10 = FloatVector.fromArray(F, c, cOff + ldc), c11 = FloatVector.fromArray(F, c, cOff + ldc + L);
        FloatVector c20 = FloatVector.fromArray(F, c, cOff + 2 * ldc), c21 = FloatVector.fromArray(F, c, cOff + 2 * ldc + L);
        FloatVector c30 = FloatVector.fromArray(F, c, cOff + 3 * ldc), c31 = FloatVector.fromArray(F, c, cOff + 3 * ldc + L);
        FloatVector c40 = FloatVector.fromArray(F, c, cOff + 4 * ldc), c41 = FloatVector.fromArray(F, c, cOff + 4 * ldc + L);
        FloatVector c50 = FloatVector.fromArray(F, c, cOff + 5 * ldc), c51 = FloatVector.fromArray(F, c, cOff + 5 * ldc + L);
        FloatVector c60 = FloatVector.fromArray(F, c, cOff + 6 * ldc), c61 = FloatVector.fromArray(F, c, cOff + 6 * ldc + L);
        FloatVector c70 = FloatVector.fromArray(F, c, cOff + 7 * ldc), c71 = FloatVector.fromArray(F, c, cOff + 7 * ldc + L);
        for (int k = 0; k < kc; k++) {
            FloatVector x0 = FloatVector.fromArray(F, xt, xOff + k * NR);
            FloatVector x1 = FloatVector.fromArray(F, xt, xOff + k * NR + L);
            int wk = wOff + k;
            FloatVector v = FloatVector.broadcast(F, w[wk]);
            c00 = v.fma(x0, c00);
            c01 = v.fma(x1, c01);
            v = FloatVector.broadcast(F, w[wk + kc]);
            c10 = v.fma(x0, c10);
            c11 = v.fma(x1, c11);
            v = FloatVector.broadcast(F, w[wk + 2 * kc]);
            c20 = v.fma(x0, c20);
            c21 = v.fma(x1, c21);
            v = FloatVector.broadcast(F, w[wk + 3 * kc]);
            c30 = v.fma(x0, c30);
            c31 = v.fma(x1, c31);
            v = FloatVector.broadcast(F, w[wk + 4 * kc]);
            c40 = v.fma(x0, c40);
            c41 = v.fma(x1, c41);
            v = FloatVector.broadcast(F, w[wk + 5 * kc]);
            c50 = v.fma(x0, c50);
            c51 = v.fma(x1, c51);
            v = FloatVector.broadcast(F, w[wk + 6 * kc]);
            c60 = v.fma(x0, c60);
            c61 = v.fma(x1, c61);
            v = FloatVector.broadcast(F, w[wk + 7 * kc]);
            c70 = v.fma(x0, c70);
            c71 = v.fma(x1, c71);
        }
        c00.intoArray(c, cOff);
        c01.intoArray(c, cOff + L);
        c10.intoArray(c, cOff + ldc);
        c11.intoArray(c, cOff + ldc + L);
        c20.intoArray(c, cOff + 2 * ldc);
        c21.intoArray(c, cOff + 2 * ldc + L);
        c30.intoArray(c, cOff + 3 * ldc);
        c31.intoArray(c, cOff + 3 * ldc + L);
        c40.intoArray(c, cOff + 4 * ldc);
        c41.intoArray(c, cOff + 4 * ldc + L);
        c50.intoArray(c, cOff + 5 * ldc);
        c51.intoArray(c, cOff + 5 * ldc + L);
        c60.intoArray(c, cOff + 6 * ldc);
        c61.intoArray(c, cOff + 6 * ldc + L);
        c70.intoArray(c, cOff + 7 * ldc);
        c71.intoArray(c, cOff + 7 * ldc + L);
    }

    /** The one-vector-wide variant of {@link #kernel8x2} for the last panel. */
    private static void kernel8x1(float[] w, int wOff, int kc, float[] xt, int xOff, float[] c, int cOff, int ldc) {
        FloatVector c0 = FloatVector.fromArray(F, c, cOff), c1 = FloatVector.fromArray(F, c, cOff + ldc);
        FloatVector c2 = FloatVector.fromArray(F, c, cOff + 2 * ldc), c3 = FloatVector.fromArray(F, c, cOff + 3 * ldc);
        FloatVector c4 = FloatVector.fromArray(F, c, cOff + 4 * ldc), c5 = FloatVector.fromArray(F, c, cOff + 5 * ldc);
        FloatVector c6 = FloatVector.fromArray(F, c, cOff + 6 * ldc), c7 = FloatVector.fromArray(F, c, cOff + 7 * ldc);
        for (int k = 0; k < kc; k++) {
            FloatVector x0 = FloatVector.fromArray(F, xt, xOff + k * L);
            int wk = wOff + k;
            c0 = FloatVector.broadcast(F, w[wk]).fma(x0, c0);
            c1 = FloatVector.broadcast(F, w[wk + kc]).fma(x0, c1);
            c2 = FloatVector.broadcast(F, w[wk + 2 * kc]).fma(x0, c2);
            c3 = FloatVector.broadcast(F, w[wk + 3 * kc]).fma(x0, c3);
            c4 = FloatVector.broadcast(F, w[wk + 4 * kc]).fma(x0, c4);
            c5 = FloatVector.broadcast(F, w[wk + 5 * kc]).fma(x0, c5);
            c6 = FloatVector.broadcast(F, w[wk + 6 * kc]).fma(x0, c6);
            c7 = FloatVector.broadcast(F, w[wk + 7 * kc]).fma(x0, c7);
        }
        c0.intoArray(c, cOff);
        c1.intoArray(c, cOff + ldc);
        c2.intoArray(c, cOff + 2 * ldc);
        c3.intoArray(c, cOff + 3 * ldc);
        c4.intoArray(c, cOff + 4 * ldc);
        c5.intoArray(c, cOff + 5 * ldc);
        c6.intoArray(c, cOff + 6 * ldc);
        c7.intoArray(c, cOff + 7 * ldc);
    }

    @Override
    public String toString() {
        return "fp8[" + rows + "x" + columns + " in blocks of " + blockRows + "x" + blockColumns + "]";
    }
}
