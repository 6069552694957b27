package dev.kiln.backend.cpu.internal;

import static dev.kiln.backend.cpu.internal.Bf16Tiles.even;
import static dev.kiln.backend.cpu.internal.Bf16Tiles.odd;
import static dev.kiln.backend.cpu.internal.Conversions.F;
import static dev.kiln.backend.cpu.internal.Conversions.I;
import static dev.kiln.backend.cpu.internal.Conversions.L;
import static dev.kiln.backend.cpu.internal.Conversions.LE;
import static dev.kiln.backend.cpu.internal.Conversions.SHORT;

import dev.kiln.backend.cpu.WorkerPool;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

/**
 * A bf16 weight, memory-mapped.
 *
 * <p>The streaming kernels widen bf16 to f32 without any shuffle: they load {@code 2L} bf16 values as {@code L}
 * ints, where each int holds an even column in its low half and the following odd column in its high half.
 * Shifting left by 16 yields the even columns as floats, masking off the low half yields the odd ones. The
 * activations are permuted once per call to match (each block of {@code 2L} columns becomes its {@code L} even
 * columns followed by its {@code L} odd ones), which costs nothing next to streaming the weights.
 *
 * <p>One activation row (decode of one sequence) is bound by memory bandwidth: each weight is read once and used
 * once. A few activation rows (batched decode, one per running sequence) still read each weight once per call,
 * and use it for every activation row while it is in registers ({@link Bf16Tiles}), so the time per call grows
 * slowly with the rows until arithmetic becomes the limit. From {@link #GEMM_MIN_TOKENS_BF16} rows on (prefill)
 * the cache-blocked {@link Gemm} takes over.
 */
final class Bf16Weight extends DenseWeight {
    /**
     * Activation rows from which {@link Gemm} beats the batched streaming kernel. Measured on the development
     * machine (2 threads, 1536x1536 and 8960x1536, weights from memory): the GEMM pads activation rows to panels
     * of 32 (and a last panel of 16), so it was 35-45% slower at 24 rows and 25-55% slower at 33 to 40 rows, within
     * 10% either way at 32 and 48 rows, and 5-20% faster from 56 rows on.
     */
    static final int GEMM_MIN_TOKENS_BF16 = 48;
    /** Columns per block of the even/odd permutation. */
    private static final int BLOCK = Bf16Tiles.BLOCK;
    /**
     * Weight rows read side by side for several activation rows, as that many sequential streams (a multiple of
     * {@link Bf16Tiles#ROWS}): each block of activations is loaded into the L1 cache once per that many rows. Four,
     * eight and sixteen measured within the noise of the shared development machine (about 10%); eight was never
     * the slowest.
     */
    private static final int STREAMS = 8;
    /**
     * Floats of activations per column block, to keep them in the L1 cache (48 KiB on the development machine)
     * while the rows of a tile use them.
     */
    private static final int BLOCK_FLOATS = 6144;
    /**
     * Fewest columns per block: each kernel call loads and stores its 16 sums and sets up its loop, which a block
     * of fewer columns no longer pays for (measured: 192-column blocks for 32 activation rows were 13-25% slower
     * than whole rows).
     */
    private static final int MIN_BLOCK_COLUMNS = 768;

    Bf16Weight(MemorySegment data, int rows, int columns, WorkerPool pool, Scratch scratch) {
        super(data, rows, columns, 2, pool, scratch);
    }

    @Override
    public String format() {
        return "bf16";
    }

    @Override
    int gemmMinTokens() {
        return GEMM_MIN_TOKENS_BF16;
    }

    @Override
    void loadRow(int row, int column, int count, float[] dst, int dstOffset) {
        Conversions.bf16ToFloat(data, row * rowBytes + 2L * column, dst, dstOffset, count);
    }

    @Override
    void stream(float[] x, int xOffset, int tokens, float[] out, int outOffset) {
        int k = columns;
        int vectorColumns = k - k % BLOCK;
        if (tokens == 1) {
            float[] xp = scratch.callerBuffer(2, k);
            permute(x, xOffset, vectorColumns, k, xp, 0);
            pool.parallelFor(rows, rowGrain(), (worker, from, to) -> rowsOneToken(xp, vectorColumns, from, to, out, outOffset));
            return;
        }
        float[] xq = scratch.callerBuffer(2, (long) tokens * vectorColumns);
        for (int t = 0; t < tokens; t++) {
            int group = groupStart(t, tokens);
            int width = groupWidth(group, tokens);
            interleave(x, xOffset + t * k, vectorColumns, width, xq, group * vectorColumns + (t - group) * BLOCK);
        }
        int blockColumns = blockColumns(tokens, vectorColumns);
        pool.parallelFor(rows, manyTokenGrain(), (worker, from, to) -> {
            float[] sums = scratch.workerBuffer(worker, 2, (long) STREAMS * tokens * L);
            rowsManyTokens(from, to, x, xOffset, xq, tokens, vectorColumns, blockColumns, sums, out, outOffset);
        });
    }

    /**
     * The first activation row of the group that holds row {@code t}: the kernels take activation rows four at a
     * time, then two, then one.
     */
    private static int groupStart(int t, int tokens) {
        int fours = tokens & ~3;
        if (t < fours) return t & ~3;
        if (t < fours + (tokens & 2)) return fours;
        return fours + (tokens & 2);
    }

    /** Activation rows in the group starting at row {@code group}. */
    private static int groupWidth(int group, int tokens) {
        int left = tokens - group;
        return left >= 4 ? 4 : left >= 2 ? 2 : 1;
    }

    /**
     * Copies a row of x into the layout of the kernels: in the even/odd order of the permutation, and with the
     * rows of a group interleaved block by block ({@code width} rows of one block of columns lie side by side), so
     * that a kernel reads its activations as one sequential stream.
     */
    private static void interleave(float[] x, int from, int vectorColumns, int width, float[] xq, int to) {
        for (int b = 0; b < vectorColumns; b += BLOCK) {
            int d = to + b * width;
            for (int i = 0; i < L; i++) {
                xq[d + i] = x[from + b + 2 * i];
                xq[d + L + i] = x[from + b + 2 * i + 1];
            }
        }
    }

    /**
     * Columns per block for that many activation rows: as many as keep {@link #BLOCK_FLOATS} floats of activations
     * in the L1 cache, but at least {@link #MIN_BLOCK_COLUMNS}; a multiple of the permutation block, at most all the
     * vector columns.
     */
    private static int blockColumns(int tokens, int vectorColumns) {
        int fit = Math.max(MIN_BLOCK_COLUMNS, BLOCK_FLOATS / tokens) / BLOCK * BLOCK;
        return Math.max(BLOCK, Math.min(fit, vectorColumns));
    }

    /**
     * Rows per parallel chunk: at least 64, so that each of a chunk's four streams runs through many consecutive
     * rows, and otherwise about sixteen chunks per thread, so that the threads finish together (and the load
     * balances when another process takes a core for a while). Measured best among 4, 8 and 16 chunks per thread.
     */
    private int rowGrain() {
        int perThread = (rows + pool.threads() - 1) / pool.threads();
        int grain = Math.max(64, perThread / 16);
        return (grain + 3) & ~3;
    }

    /**
     * Rows per parallel chunk for several activation rows: about 32 chunks per thread, since a chunk takes longer
     * per row than for one activation row and the threads should still finish together, but at least four rows
     * per stream.
     */
    private int manyTokenGrain() {
        int perThread = (rows + pool.threads() - 1) / pool.threads();
        int grain = Math.max(4 * STREAMS, perThread / 32);
        return (grain + STREAMS - 1) / STREAMS * STREAMS;
    }

    /**
     * One token against rows {@code from .. to-1}. The chunk is cut into four equal runs processed side by side
     * (rows from+i, from+q+i, from+2q+i, from+3q+i): four long sequential streams keep the hardware prefetchers
     * ahead, where four adjacent short rows would restart them every few kilobytes.
     */
    private void rowsOneToken(float[] xp, int vectorColumns, int from, int to, float[] out, int outOffset) {
        int q = (to - from) / 4;
        for (int i = 0; i < q; i++) {
            int r = from + i;
            rows1x4(xp, vectorColumns, r, r + q, r + 2 * q, r + 3 * q, out, outOffset);
        }
        for (int r = from + 4 * q; r < to; r++) rows1x4(xp, vectorColumns, r, r, r, r, out, outOffset);
    }

    /** Copies a row of x into the even/odd order of the kernels; the columns after the last full block keep their order. */
    private static void permute(float[] x, int from, int vectorColumns, int columns, float[] xp, int to) {
        for (int b = 0; b < vectorColumns; b += BLOCK) {
            for (int i = 0; i < L; i++) {
                xp[to + b + i] = x[from + b + 2 * i];
                xp[to + b + L + i] = x[from + b + 2 * i + 1];
            }
        }
        System.arraycopy(x, from + vectorColumns, xp, to + vectorColumns, columns - vectorColumns);
    }

    /** One token against four rows (which may repeat: a repeated row's result is written again). */
    private void rows1x4(float[] xp, int vectorColumns, int r, int r1, int r2, int r3, float[] out, int outOffset) {
        long b0 = r * rowBytes, b1 = r1 * rowBytes, b2 = r2 * rowBytes, b3 = r3 * rowBytes;
        FloatVector a0 = FloatVector.zero(F), a1 = FloatVector.zero(F), a2 = FloatVector.zero(F), a3 = FloatVector.zero(F);
        MemorySegment w = data;
        for (int c = 0; c < vectorColumns; c += BLOCK) {
            FloatVector xe = FloatVector.fromArray(F, xp, c);
            FloatVector xo = FloatVector.fromArray(F, xp, c + L);
            long off = 2L * c;
            IntVector v0 = IntVector.fromMemorySegment(I, w, b0 + off, LE);
            IntVector v1 = IntVector.fromMemorySegment(I, w, b1 + off, LE);
            IntVector v2 = IntVector.fromMemorySegment(I, w, b2 + off, LE);
            IntVector v3 = IntVector.fromMemorySegment(I, w, b3 + off, LE);
            a0 = even(v0).fma(xe, a0);
            a1 = even(v1).fma(xe, a1);
            a2 = even(v2).fma(xe, a2);
            a3 = even(v3).fma(xe, a3);
            a0 = odd(v0).fma(xo, a0);
            a1 = odd(v1).fma(xo, a1);
            a2 = odd(v2).fma(xo, a2);
            a3 = odd(v3).fma(xo, a3);
        }
        float s0 = a0.reduceLanes(VectorOperators.ADD), s1 = a1.reduceLanes(VectorOperators.ADD);
        float s2 = a2.reduceLanes(VectorOperators.ADD), s3 = a3.reduceLanes(VectorOperators.ADD);
        for (int c = vectorColumns; c < columns; c++) {
            float xc = xp[c];
            s0 += xc * weightAt(b0, c);
            s1 += xc * weightAt(b1, c);
            s2 += xc * weightAt(b2, c);
            s3 += xc * weightAt(b3, c);
        }
        out[outOffset + r] = s0;
        out[outOffset + r1] = s1;
        out[outOffset + r2] = s2;
        out[outOffset + r3] = s3;
    }

    /**
     * Every activation row against weight rows {@code from .. to-1}. As for one activation row, the chunk is cut
     * into {@link #STREAMS} equal runs processed side by side, so that the weights are read as that many long
     * sequential streams; the rows left over are processed together at the end.
     */
    private void rowsManyTokens(int from, int to, float[] x, int xOffset, float[] xq, int tokens, int vectorColumns,
                                int blockColumns, float[] sums, float[] out, int outOffset) {
        int run = (to - from) / STREAMS;
        for (int i = 0; i < run; i++) {
            tile(from + i, run, STREAMS, x, xOffset, xq, tokens, vectorColumns, blockColumns, sums, out, outOffset);
        }
        int done = from + STREAMS * run;
        if (done < to) {
            tile(done, 1, to - done, x, xOffset, xq, tokens, vectorColumns, blockColumns, sums, out, outOffset);
        }
    }

    /**
     * Weight rows {@code first + j·step} for {@code j < count} against every activation row. The rows are read side
     * by side, one block of columns at a time: each block of weights is widened in registers and used by every
     * activation row while it is in the L1 cache, and each block of activations is used by all the tile's rows.
     * The columns after the last full permutation block (none in the usual model shapes) are added in scalar code.
     */
    private void tile(int first, int step, int count, float[] x, int xOffset, float[] xq, int tokens,
                      int vectorColumns, int blockColumns, float[] sums, float[] out, int outOffset) {
        int sumStride = tokens * L;
        Arrays.fill(sums, 0, count * sumStride, 0f);
        for (int kb = 0; kb < vectorColumns; kb += blockColumns) {
            int end = Math.min(vectorColumns, kb + blockColumns);
            for (int j = 0; j < count; j += Bf16Tiles.ROWS) {
                tokensAgainstRows(first, step, j, count, kb, end, xq, tokens, vectorColumns, sums, j * sumStride,
                        sumStride);
            }
        }
        for (int j = 0; j < count; j++) {
            int r = first + j * step;
            long base = r * rowBytes;
            for (int t = 0; t < tokens; t++) {
                float sum = FloatVector.fromArray(F, sums, j * sumStride + t * L).reduceLanes(VectorOperators.ADD);
                int xt = xOffset + t * columns;
                for (int c = vectorColumns; c < columns; c++) sum += x[xt + c] * weightAt(base, c);
                out[outOffset + t * rows + r] = sum;
            }
        }
    }

    /**
     * Weight rows {@code j .. j+3} of a tile (repeating its last row where they would pass it: the sums of a
     * repeated row go to rows of {@code sums} that are never read) against every activation row, group by group,
     * over columns {@code from .. to-1}.
     */
    private void tokensAgainstRows(int first, int step, int j, int count, int from, int to, float[] xq, int tokens,
                                   int vectorColumns, float[] sums, int sumOffset, int sumStride) {
        int last = count - 1;
        long b0 = (first + j * step) * rowBytes;
        long b1 = (first + Math.min(j + 1, last) * step) * rowBytes;
        long b2 = (first + Math.min(j + 2, last) * step) * rowBytes;
        long b3 = (first + Math.min(j + 3, last) * step) * rowBytes;
        int t = 0;
        for (; t + 4 <= tokens; t += 4) {
            Bf16Tiles.dot4x4(data, b0, b1, b2, b3, from, to, xq, t * vectorColumns, sums, sumOffset + t * L, sumStride);
        }
        if (t + 2 <= tokens) {
            Bf16Tiles.dot4x2(data, b0, b1, b2, b3, from, to, xq, t * vectorColumns, sums, sumOffset + t * L, sumStride);
            t += 2;
        }
        if (t < tokens) {
            Bf16Tiles.dot4x1(data, b0, b1, b2, b3, from, to, xq, t * vectorColumns, sums, sumOffset + t * L, sumStride);
        }
    }

    private float weightAt(long rowBase, int column) {
        return Conversions.bf16ToFloat(data.get(SHORT, rowBase + 2L * column));
    }
}
