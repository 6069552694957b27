package dev.kiln.backend.cpu.internal;

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
 * <p>The streaming kernel widens bf16 to f32 without any shuffle: it loads {@code 2L} bf16 values as {@code L}
 * ints, where each int holds an even column in its low half and the following odd column in its high half.
 * Shifting left by 16 yields the even columns as floats, masking off the low half yields the odd ones. The
 * activations are permuted once per call to match (each block of {@code 2L} columns becomes its {@code L} even
 * columns followed by its {@code L} odd ones), which costs nothing next to streaming the weights.
 */
final class Bf16Weight extends DenseWeight {
    /** Columns per block of the even/odd permutation. */
    private static final int BLOCK = 2 * L;

    Bf16Weight(MemorySegment data, int rows, int columns, WorkerPool pool, Scratch scratch) {
        super(data, rows, columns, 2, pool, scratch);
    }

    @Override
    public String format() {
        return "bf16";
    }

    @Override
    void loadRow(int row, int column, int count, float[] dst, int dstOffset) {
        Conversions.bf16ToFloat(data, row * rowBytes + 2L * column, dst, dstOffset, count);
    }

    @Override
    void stream(float[] x, int xOffset, int tokens, float[] out, int outOffset) {
        int k = columns;
        int vectorColumns = k - k % BLOCK;
        int grain = rowGrain();
        if (tokens == 1) {
            float[] xp = scratch.callerBuffer(2, k);
            permute(x, xOffset, vectorColumns, k, xp, 0);
            pool.parallelFor(rows, grain, (worker, from, to) -> rowsOneToken(xp, vectorColumns, from, to, out, outOffset));
            return;
        }
        int tokenGroups = (tokens + 3) / 4;
        float[] xp = scratch.callerBuffer(2, (long) tokenGroups * 4 * k);
        for (int t = 0; t < tokens; t++) permute(x, xOffset + t * k, vectorColumns, k, xp, t * k);
        Arrays.fill(xp, tokens * k, tokenGroups * 4 * k, 0f);
        pool.parallelFor(rows, grain, (worker, from, to) -> {
            // Two interleaved sequential streams: rows from+i and from+half+i.
            int half = (to - from + 1) / 2;
            for (int i = 0; i < half; i++) {
                int r0 = from + i;
                int r1 = Math.min(r0 + half, to - 1);
                for (int tg = 0; tg < tokenGroups; tg++) {
                    rows4x2(xp, tg * 4, Math.min(4, tokens - tg * 4), vectorColumns, r0, r1, out, outOffset);
                }
            }
        });
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
     * Tokens t..t+3 (permuted rows of xp; only the first {@code valid} are written) against rows r and r1 (which
     * may be equal).
     */
    private void rows4x2(float[] xp, int t, int valid, int vectorColumns, int r, int r1, float[] out, int outOffset) {
        int k = columns;
        long b0 = r * rowBytes, b1 = r1 * rowBytes;
        int x0 = t * k, x1 = x0 + k, x2 = x1 + k, x3 = x2 + k;
        FloatVector a00 = FloatVector.zero(F), a01 = FloatVector.zero(F);
        FloatVector a10 = FloatVector.zero(F), a11 = FloatVector.zero(F);
        FloatVector a20 = FloatVector.zero(F), a21 = FloatVector.zero(F);
        FloatVector a30 = FloatVector.zero(F), a31 = FloatVector.zero(F);
        MemorySegment w = data;
        for (int c = 0; c < vectorColumns; c += BLOCK) {
            long off = 2L * c;
            IntVector v0 = IntVector.fromMemorySegment(I, w, b0 + off, LE);
            IntVector v1 = IntVector.fromMemorySegment(I, w, b1 + off, LE);
            FloatVector e0 = even(v0), e1 = even(v1), o0 = odd(v0), o1 = odd(v1);
            FloatVector xe = FloatVector.fromArray(F, xp, x0 + c), xo = FloatVector.fromArray(F, xp, x0 + c + L);
            a00 = o0.fma(xo, e0.fma(xe, a00));
            a01 = o1.fma(xo, e1.fma(xe, a01));
            xe = FloatVector.fromArray(F, xp, x1 + c);
            xo = FloatVector.fromArray(F, xp, x1 + c + L);
            a10 = o0.fma(xo, e0.fma(xe, a10));
            a11 = o1.fma(xo, e1.fma(xe, a11));
            xe = FloatVector.fromArray(F, xp, x2 + c);
            xo = FloatVector.fromArray(F, xp, x2 + c + L);
            a20 = o0.fma(xo, e0.fma(xe, a20));
            a21 = o1.fma(xo, e1.fma(xe, a21));
            xe = FloatVector.fromArray(F, xp, x3 + c);
            xo = FloatVector.fromArray(F, xp, x3 + c + L);
            a30 = o0.fma(xo, e0.fma(xe, a30));
            a31 = o1.fma(xo, e1.fma(xe, a31));
        }
        float[] s = {
            a00.reduceLanes(VectorOperators.ADD), a01.reduceLanes(VectorOperators.ADD),
            a10.reduceLanes(VectorOperators.ADD), a11.reduceLanes(VectorOperators.ADD),
            a20.reduceLanes(VectorOperators.ADD), a21.reduceLanes(VectorOperators.ADD),
            a30.reduceLanes(VectorOperators.ADD), a31.reduceLanes(VectorOperators.ADD)
        };
        for (int c = vectorColumns; c < k; c++) {
            float w0 = weightAt(b0, c), w1 = weightAt(b1, c);
            for (int i = 0; i < 4; i++) {
                float xc = xp[x0 + i * k + c];
                s[2 * i] += xc * w0;
                s[2 * i + 1] += xc * w1;
            }
        }
        for (int i = 0; i < valid; i++) {
            int o = outOffset + (t + i) * rows;
            out[o + r] = s[2 * i];
            out[o + r1] = s[2 * i + 1];
        }
    }

    private float weightAt(long rowBase, int column) {
        return Conversions.bf16ToFloat(data.get(SHORT, rowBase + 2L * column));
    }

    private static FloatVector even(IntVector pair) {
        return pair.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    private static FloatVector odd(IntVector pair) {
        return pair.and(0xffff0000).reinterpretAsFloats();
    }
}
