package dev.kiln.quant.cpu;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cpu.CpuTensor;
import dev.kiln.backend.cpu.WorkerPool;
import java.util.Arrays;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * A weight {@code [rows, columns]} stored in a packed integer format and decoded inside its kernels, never widened
 * to f32 as a whole. Each row is stored {@link #depth()} columns wide: the real columns, then padding up to the
 * format's block, which decodes to finite values and always meets zero activations, so no kernel needs a tail loop.
 *
 * <p>A format supplies two things: {@link #streamOneToken}, the decode kernel (one activation row: every weight is
 * read once per step, so it is bound by memory bandwidth and dequantizes in registers), and {@link #decode}, exact
 * f32 values of part of a row. This class builds the other paths on the latter:
 * <ul>
 *   <li>2 to {@value #GEMM_MIN_TOKENS}-1 rows (a few sequences decoding together, speculative verification): each
 *       pair of weight rows is decoded once into an L1-resident buffer and dotted with the tokens four at a time;</li>
 *   <li>more rows (prefill): {@link TiledGemm} over decoded tiles.</li>
 * </ul>
 * All paths compute the same sums up to f32 rounding.
 *
 * <p>Scratch slots: caller slot 1 (prepared activations), caller slot 2 (per-group sums of a format's decode
 * kernel), worker slot 2 (decoded rows); {@link TiledGemm} uses the others.
 */
public abstract class PackedWeight implements Weight {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length();
    /** From this many activation rows on, {@link TiledGemm} beats decoding rows for each group of four tokens. */
    public static final int GEMM_MIN_TOKENS = 16;

    protected final int rows;
    protected final int columns;
    protected final int depth;
    protected final WorkerPool pool;
    protected final KernelScratch scratch;

    /**
     * @param depth stored columns per row: at least {@code columns}, a multiple of the vector length
     * @throws IllegalArgumentException when the geometry is inconsistent
     */
    protected PackedWeight(int rows, int columns, int depth, WorkerPool pool, KernelScratch scratch) {
        if (rows < 1 || columns < 1 || depth < columns || depth % L != 0) {
            throw new IllegalArgumentException("invalid packed weight geometry: " + rows + "x" + columns
                    + " stored " + depth + " wide");
        }
        this.rows = rows;
        this.columns = columns;
        this.depth = depth;
        this.pool = pool;
        this.scratch = scratch;
    }

    @Override
    public final int rows() {
        return rows;
    }

    @Override
    public final int columns() {
        return columns;
    }

    /** Stored columns per row, padding included. */
    public final int depth() {
        return depth;
    }

    /**
     * The decode kernel: {@code out[outOffset + r] = Σ_c x[xOffset + c] · W[r, c]} for every row r, for one
     * activation row of {@link #columns} values.
     */
    protected abstract void streamOneToken(float[] x, int xOffset, float[] out, int outOffset);

    /**
     * Writes the exact values (each rounded once to f32) of row {@code row}, stored columns {@code column ..
     * column + count - 1}, to {@code dst}. {@code column} is 0 or a multiple of {@link TiledGemm#KC}, and
     * {@code column + count} is a multiple of {@link TiledGemm#KC} or equals {@link #depth()}.
     */
    protected abstract void decode(int row, int column, int count, float[] dst, int dstOffset);

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
        if (tokens == 1) {
            streamOneToken(in.array(), in.offset(), result.array(), result.offset());
        } else if (tokens < GEMM_MIN_TOKENS) {
            fewTokens(in.array(), in.offset(), tokens, result.array(), result.offset());
        } else {
            TiledGemm.multiply(this::decode, rows, columns, depth, in.array(), in.offset(), tokens, result.array(),
                    result.offset(), pool, scratch);
        }
    }

    @Override
    public final void gatherRows(int[] ids, Tensor out) {
        CpuTensor result = CpuTensor.f32(out);
        if (result.rowLength() != columns || result.rowCount() < ids.length) {
            throw new IllegalArgumentException("output " + Arrays.toString(result.shape()) + " cannot hold "
                    + ids.length + " rows of " + columns);
        }
        float[] row = scratch.callerBuffer(1, depth);
        for (int t = 0; t < ids.length; t++) {
            int id = ids[t];
            if (id < 0 || id >= rows) throw new IndexOutOfBoundsException("row " + id + " of a " + rows + "-row weight");
            decode(id, 0, depth, row, 0);
            System.arraycopy(row, 0, result.array(), result.rowOffset(t), columns);
        }
    }

    /** The calling thread's buffer for activations prepared by a decode kernel (caller slot 1). */
    protected final float[] activationBuffer(long size) {
        return scratch.callerBuffer(1, size);
    }

    /** The calling thread's buffer for per-group activation sums (caller slot 2). */
    protected final float[] sumsBuffer(long size) {
        return scratch.callerBuffer(2, size);
    }

    /**
     * Rows per parallel chunk of a decode kernel: a multiple of eight (its interleaved streams), at least 128 so
     * that each stream runs through many consecutive rows, and otherwise about sixteen chunks per thread, so that the
     * threads finish together even when another process takes a core for a while.
     */
    protected final int rowGrain() {
        int perThread = (rows + pool.threads() - 1) / pool.threads();
        return (Math.max(128, perThread / 16) + 7) & ~7;
    }

    private void fewTokens(float[] x, int xOffset, int tokens, float[] out, int outOffset) {
        float[] xp = scratch.callerBuffer(1, (long) tokens * depth);
        for (int t = 0; t < tokens; t++) {
            System.arraycopy(x, xOffset + t * columns, xp, t * depth, columns);
            Arrays.fill(xp, t * depth + columns, (t + 1) * depth, 0f);
        }
        int pairs = (rows + 1) / 2;
        int grain = Math.max(1, pairs / (pool.threads() * 8));
        pool.parallelFor(pairs, grain, (worker, from, to) -> {
            float[] decoded = scratch.workerBuffer(worker, 2, 2L * depth);
            for (int p = from; p < to; p++) {
                int r = 2 * p;
                int r1 = Math.min(r + 1, rows - 1);
                decode(r, 0, depth, decoded, 0);
                decode(r1, 0, depth, decoded, depth);
                for (int t = 0; t < tokens; t += 4) dot2x4(decoded, xp, t, Math.min(4, tokens - t), r, r1, out, outOffset);
            }
        });
    }

    /**
     * {@code out[t+i, r] = w0 · x[t+i]} and {@code out[t+i, r1] = w1 · x[t+i]} for {@code i < valid} (at most four;
     * missing tokens repeat the last valid one and are not written), with the decoded rows at 0 and {@code depth} of
     * w: eight independent accumulators keep the FMA units busy.
     */
    private void dot2x4(float[] w, float[] x, int t, int valid, int r, int r1, float[] out, int outOffset) {
        int n = depth;
        int x0 = t * n;
        int x1 = (t + Math.min(1, valid - 1)) * n;
        int x2 = (t + Math.min(2, valid - 1)) * n;
        int x3 = (t + Math.min(3, valid - 1)) * n;
        FloatVector a00 = FloatVector.zero(F), a01 = FloatVector.zero(F), a02 = FloatVector.zero(F), a03 = FloatVector.zero(F);
        FloatVector a10 = FloatVector.zero(F), a11 = FloatVector.zero(F), a12 = FloatVector.zero(F), a13 = FloatVector.zero(F);
        for (int c = 0; c < n; c += L) {
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
        store(out, outOffset + t * rows, r, r1, a00, a10);
        if (valid > 1) store(out, outOffset + (t + 1) * rows, r, r1, a01, a11);
        if (valid > 2) store(out, outOffset + (t + 2) * rows, r, r1, a02, a12);
        if (valid > 3) store(out, outOffset + (t + 3) * rows, r, r1, a03, a13);
    }

    private static void store(float[] out, int rowOffset, int r, int r1, FloatVector first, FloatVector second) {
        out[rowOffset + r] = first.reduceLanes(VectorOperators.ADD);
        out[rowOffset + r1] = second.reduceLanes(VectorOperators.ADD);
    }

    @Override
    public String toString() {
        return format() + "[" + rows + "x" + columns + "]";
    }
}
