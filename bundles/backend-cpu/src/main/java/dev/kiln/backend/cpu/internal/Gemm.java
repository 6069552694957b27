package dev.kiln.backend.cpu.internal;

import dev.kiln.backend.cpu.WorkerPool;
import java.util.Arrays;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Cache-blocked matrix multiplication {@code out = x · Wᵀ} for many activation rows (prefill), computed as
 * {@code outᵀ = W · xᵀ} so that no weight has to be transposed.
 *
 * <p>The activations are transposed once per call into panels of {@link #NR} tokens ({@code xᵀ} is small
 * and its cost is shared by every weight row); weight rows are widened to f32 once per block of
 * {@link #KC} columns into a per-thread buffer (their cost is shared by every token). The microkernel then holds
 * an {@code MR × NR} tile of {@code outᵀ} in registers: per column it loads two vectors of tokens and broadcasts
 * {@code MR} weights, for {@code 2·MR} fused multiply-adds; no horizontal reductions are needed. Work items are
 * chunks of {@link #MC} weight rows, so each thread streams its own weights exactly once.
 */
public final class Gemm {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length();
    /** Tokens per panel of xᵀ: two vectors. */
    static final int NR = 2 * L;
    /** Weight rows per microkernel tile. */
    static final int MR = 8;
    /** Columns per block: an MR-row slice of the weight block plus a panel of xᵀ stay in the L1 cache. */
    static final int KC = 256;
    /** Weight rows per work item. */
    static final int MC = 64;

    private Gemm() {}

    /** Fills a run of one weight row as f32. */
    @FunctionalInterface
    public interface RowSource {
        /** Writes {@code count} values of weight row {@code row}, starting at column {@code column}, to {@code dst}. */
        void load(int row, int column, int count, float[] dst, int dstOffset);
    }

    /**
     * {@code out[t, r] = Σ_c x[t, c] · W[r, c]} for {@code t < tokens}, {@code r < rows}.
     *
     * @param weights  the weight rows
     * @param rows     weight rows (output features)
     * @param columns  weight columns (input features)
     * @param x        activations, row t at {@code xOffset + t * columns}
     * @param out      results, row t at {@code outOffset + t * rows}
     */
    public static void multiply(RowSource weights, int rows, int columns, float[] x, int xOffset, int tokens,
                                float[] out, int outOffset, WorkerPool pool, Scratch scratch) {
        int panels = (tokens + NR - 1) / NR;
        int paddedTokens = panels * NR;
        float[] xt = scratch.callerBuffer(0, (long) panels * columns * NR);
        pool.parallelFor(panels, 1, (worker, from, to) -> {
            for (int p = from; p < to; p++) transposePanel(x, xOffset, tokens, columns, p, xt);
        });
        int items = (rows + MC - 1) / MC;
        pool.parallelFor(items, 1, (worker, from, to) -> {
            float[] w = scratch.workerBuffer(worker, 0, (long) MC * KC);
            float[] c = scratch.workerBuffer(worker, 1, (long) MC * paddedTokens);
            for (int item = from; item < to; item++) {
                int r0 = item * MC;
                int count = Math.min(MC, rows - r0);
                chunk(weights, r0, count, columns, xt, panels, tokens, paddedTokens, w, c, out, outOffset, rows);
            }
        });
    }

    /** Panel p of xᵀ: {@code xt[p·columns·NR + k·width + j] = x[p·NR + j, k]}, zero beyond the last token. */
    private static void transposePanel(float[] x, int xOffset, int tokens, int columns, int p, float[] xt) {
        int t0 = p * NR;
        int width = panelWidth(tokens, p);
        int base = p * columns * NR;
        for (int j = 0; j < width; j++) {
            int t = t0 + j;
            if (t < tokens) {
                int src = xOffset + t * columns;
                for (int k = 0; k < columns; k++) xt[base + k * width + j] = x[src + k];
            } else {
                for (int k = 0; k < columns; k++) xt[base + k * width + j] = 0f;
            }
        }
    }

    /** The last panel is one vector wide when the tokens left fit in one, sparing half the work on padding. */
    private static int panelWidth(int tokens, int panel) {
        int left = tokens - panel * NR;
        return left <= L ? L : NR;
    }

    private static void chunk(RowSource weights, int r0, int count, int columns, float[] xt, int panels, int tokens,
                              int paddedTokens, float[] w, float[] c, float[] out, int outOffset, int rows) {
        int paddedRows = (count + MR - 1) / MR * MR;
        Arrays.fill(c, 0, paddedRows * paddedTokens, 0f);
        for (int k0 = 0; k0 < columns; k0 += KC) {
            int kc = Math.min(KC, columns - k0);
            for (int i = 0; i < count; i++) weights.load(r0 + i, k0, kc, w, i * kc);
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
        int w0 = wOff, w1 = w0 + kc, w2 = w1 + kc, w3 = w2 + kc, w4 = w3 + kc, w5 = w4 + kc, w6 = w5 + kc, w7 = w6 + kc;
        for (int k = 0; k < kc; k++) {
            int xk = xOff + k * NR;
            FloatVector b0 = FloatVector.fromArray(F, xt, xk);
            FloatVector b1 = FloatVector.fromArray(F, xt, xk + L);
            FloatVector a = FloatVector.broadcast(F, w[w0 + k]);
            c00 = a.fma(b0, c00);
            c01 = a.fma(b1, c01);
            a = FloatVector.broadcast(F, w[w1 + k]);
            c10 = a.fma(b0, c10);
            c11 = a.fma(b1, c11);
            a = FloatVector.broadcast(F, w[w2 + k]);
            c20 = a.fma(b0, c20);
            c21 = a.fma(b1, c21);
            a = FloatVector.broadcast(F, w[w3 + k]);
            c30 = a.fma(b0, c30);
            c31 = a.fma(b1, c31);
            a = FloatVector.broadcast(F, w[w4 + k]);
            c40 = a.fma(b0, c40);
            c41 = a.fma(b1, c41);
            a = FloatVector.broadcast(F, w[w5 + k]);
            c50 = a.fma(b0, c50);
            c51 = a.fma(b1, c51);
            a = FloatVector.broadcast(F, w[w6 + k]);
            c60 = a.fma(b0, c60);
            c61 = a.fma(b1, c61);
            a = FloatVector.broadcast(F, w[w7 + k]);
            c70 = a.fma(b0, c70);
            c71 = a.fma(b1, c71);
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

    /** Adds an 8-row × 1-vector tile of {@code W · xᵀ} over {@code kc} columns to {@code c}. */
    private static void kernel8x1(float[] w, int wOff, int kc, float[] xt, int xOff, float[] c, int cOff, int ldc) {
        FloatVector c0 = FloatVector.fromArray(F, c, cOff);
        FloatVector c1 = FloatVector.fromArray(F, c, cOff + ldc);
        FloatVector c2 = FloatVector.fromArray(F, c, cOff + 2 * ldc);
        FloatVector c3 = FloatVector.fromArray(F, c, cOff + 3 * ldc);
        FloatVector c4 = FloatVector.fromArray(F, c, cOff + 4 * ldc);
        FloatVector c5 = FloatVector.fromArray(F, c, cOff + 5 * ldc);
        FloatVector c6 = FloatVector.fromArray(F, c, cOff + 6 * ldc);
        FloatVector c7 = FloatVector.fromArray(F, c, cOff + 7 * ldc);
        int w0 = wOff, w1 = w0 + kc, w2 = w1 + kc, w3 = w2 + kc, w4 = w3 + kc, w5 = w4 + kc, w6 = w5 + kc, w7 = w6 + kc;
        for (int k = 0; k < kc; k++) {
            FloatVector b = FloatVector.fromArray(F, xt, xOff + k * L);
            c0 = FloatVector.broadcast(F, w[w0 + k]).fma(b, c0);
            c1 = FloatVector.broadcast(F, w[w1 + k]).fma(b, c1);
            c2 = FloatVector.broadcast(F, w[w2 + k]).fma(b, c2);
            c3 = FloatVector.broadcast(F, w[w3 + k]).fma(b, c3);
            c4 = FloatVector.broadcast(F, w[w4 + k]).fma(b, c4);
            c5 = FloatVector.broadcast(F, w[w5 + k]).fma(b, c5);
            c6 = FloatVector.broadcast(F, w[w6 + k]).fma(b, c6);
            c7 = FloatVector.broadcast(F, w[w7 + k]).fma(b, c7);
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
}
