package dev.kiln.quant.cpu;

import dev.kiln.backend.cpu.WorkerPool;
import java.util.Arrays;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * {@code out = x · Wᵀ} for many activation rows (prefill) over a weight whose rows are decoded to f32 one tile at a
 * time: computed as {@code outᵀ = W · xᵀ}, so the weight is never transposed.
 *
 * <p>Prefill reuses every weight for every token, so it is bound by arithmetic, not by memory: decoding a tile of
 * {@link #KC} columns of {@link #MC} weight rows once (scales and zero points applied) costs little next to the
 * {@code 2·tokens} flops each decoded weight then takes part in. The activations are transposed once per call into
 * panels of {@code NR = 2L} tokens; a register-tiled microkernel keeps an {@code MR × NR} block of {@code outᵀ} in
 * 24 vector registers, loading two token vectors and broadcasting {@code MR} weights per column (no horizontal
 * reductions). Work items are chunks of {@code MC} weight rows, so each thread decodes its own rows exactly once.
 *
 * <p>Scratch slots: caller slot 0 (transposed activations), worker slots 0 and 1 (decoded tile, output block).
 */
public final class TiledGemm {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length();
    /** Tokens per panel of xᵀ: two vectors. */
    static final int NR = 2 * L;
    /** Weight rows per microkernel tile: 2·MR accumulators, two token vectors and a broadcast fit 32 registers. */
    static final int MR = 12;
    /** Weight rows per work item (a multiple of MR). */
    static final int MC = 96;
    /**
     * Columns per decoded tile: an MR-row slice of it and a panel of xᵀ stay in the L1 cache. A multiple of every
     * packed format's block, so that tiles always hold whole blocks.
     */
    public static final int KC = 256;

    private TiledGemm() {}

    /** Decodes part of one weight row to f32. */
    @FunctionalInterface
    public interface RowDecoder {
        /**
         * Writes the values of weight row {@code row}, columns {@code column .. column + count - 1}, to
         * {@code dst[dstOffset ..]}. {@code column} is a multiple of {@link #KC}; columns past the weight's last
         * real column (padding) may decode to any finite value, since they meet zero activations.
         */
        void decode(int row, int column, int count, float[] dst, int dstOffset);
    }

    /**
     * {@code out[t, r] = Σ_c x[t, c] · W[r, c]} for {@code t < tokens}, {@code r < rows}.
     *
     * @param columns input features: the length of an activation row
     * @param depth   columns the decoder produces per row ({@code >= columns}, the stored width with padding)
     * @param x       activations, row t at {@code xOffset + t·columns}
     * @param out     results, row t at {@code outOffset + t·rows}
     */
    public static void multiply(RowDecoder weights, int rows, int columns, int depth, float[] x, int xOffset, int tokens,
                                float[] out, int outOffset, WorkerPool pool, KernelScratch scratch) {
        if (depth < columns) throw new IllegalArgumentException("depth " + depth + " < columns " + columns);
        int panels = (tokens + NR - 1) / NR;
        int paddedTokens = panels * NR;
        float[] xt = scratch.callerBuffer(0, (long) panels * depth * NR);
        pool.parallelFor(panels, 1, (worker, from, to) -> {
            for (int p = from; p < to; p++) transposePanel(x, xOffset, tokens, columns, depth, p, xt);
        });
        int items = (rows + MC - 1) / MC;
        pool.parallelFor(items, 1, (worker, from, to) -> {
            float[] w = scratch.workerBuffer(worker, 0, (long) MC * KC);
            float[] c = scratch.workerBuffer(worker, 1, (long) MC * paddedTokens);
            for (int item = from; item < to; item++) {
                int r0 = item * MC;
                chunk(weights, r0, Math.min(MC, rows - r0), depth, xt, panels, tokens, paddedTokens, w, c, out,
                        outOffset, rows);
            }
        });
    }

    /** Panel p of xᵀ: {@code xt[p·depth·NR + k·width + j] = x[p·NR + j, k]}, zero beyond the last token and column. */
    private static void transposePanel(float[] x, int xOffset, int tokens, int columns, int depth, int p, float[] xt) {
        int width = panelWidth(tokens, p);
        int base = p * depth * NR;
        Arrays.fill(xt, base, base + depth * width, 0f);
        int last = Math.min(tokens, p * NR + width);
        for (int t = p * NR; t < last; t++) {
            int src = xOffset + t * columns;
            int dst = base + (t - p * NR);
            for (int k = 0; k < columns; k++) xt[dst + k * width] = x[src + k];
        }
    }

    /** The last panel is one vector wide when the tokens left fit in one, sparing half the work on padding. */
    private static int panelWidth(int tokens, int panel) {
        return tokens - panel * NR <= L ? L : NR;
    }

    private static void chunk(RowDecoder weights, int r0, int count, int depth, float[] xt, int panels, int tokens,
                              int paddedTokens, float[] w, float[] c, float[] out, int outOffset, int rows) {
        int paddedRows = (count + MR - 1) / MR * MR;
        Arrays.fill(c, 0, paddedRows * paddedTokens, 0f);
        for (int k0 = 0; k0 < depth; k0 += KC) {
            int kc = Math.min(KC, depth - k0);
            for (int i = 0; i < count; i++) weights.decode(r0 + i, k0, kc, w, i * kc);
            Arrays.fill(w, count * kc, paddedRows * kc, 0f);
            for (int p = 0; p < panels; p++) {
                int width = panelWidth(tokens, p);
                int xBase = p * depth * NR + k0 * width;
                for (int rt = 0; rt < paddedRows; rt += MR) {
                    int cBase = rt * paddedTokens + p * NR;
                    if (width == NR) tile12x2(w, rt * kc, kc, xt, xBase, c, cBase, paddedTokens);
                    else tile12x1(w, rt * kc, kc, xt, xBase, c, cBase, paddedTokens);
                }
            }
        }
        for (int t = 0; t < tokens; t++) {
            int dst = outOffset + t * rows + r0;
            for (int i = 0; i < count; i++) out[dst + i] = c[i * paddedTokens + t];
        }
    }

    /**
     * Adds {@code W[12 rows, kc] · xᵀ[kc, 2 vectors]} to the block of c at {@code cOff} (row stride {@code ldc}); the
     * weight rows are {@code kc} apart in w.
     */
    private static void tile12x2(float[] w, int wOff, int kc, float[] xt, int xOff, float[] c, int cOff, int ldc) {
        int o0 = cOff, o1 = o0 + ldc, o2 = o1 + ldc, o3 = o2 + ldc, o4 = o3 + ldc, o5 = o4 + ldc;
        int o6 = o5 + ldc, o7 = o6 + ldc, o8 = o7 + ldc, o9 = o8 + ldc, o10 = o9 + ldc, o11 = o10 + ldc;
        FloatVector l0 = FloatVector.fromArray(F, c, o0), h0 = FloatVector.fromArray(F, c, o0 + L);
        FloatVector l1 = FloatVector.fromArray(F, c, o1), h1 = FloatVector.fromArray(F, c, o1 + L);
        FloatVector l2 = FloatVector.fromArray(F, c, o2), h2 = FloatVector.fromArray(F, c, o2 + L);
        FloatVector l3 = FloatVector.fromArray(F, c, o3), h3 = FloatVector.fromArray(F, c, o3 + L);
        FloatVector l4 = FloatVector.fromArray(F, c, o4), h4 = FloatVector.fromArray(F, c, o4 + L);
        FloatVector l5 = FloatVector.fromArray(F, c, o5), h5 = FloatVector.fromArray(F, c, o5 + L);
        FloatVector l6 = FloatVector.fromArray(F, c, o6), h6 = FloatVector.fromArray(F, c, o6 + L);
        FloatVector l7 = FloatVector.fromArray(F, c, o7), h7 = FloatVector.fromArray(F, c, o7 + L);
        FloatVector l8 = FloatVector.fromArray(F, c, o8), h8 = FloatVector.fromArray(F, c, o8 + L);
        FloatVector l9 = FloatVector.fromArray(F, c, o9), h9 = FloatVector.fromArray(F, c, o9 + L);
        FloatVector l10 = FloatVector.fromArray(F, c, o10), h10 = FloatVector.fromArray(F, c, o10 + L);
        FloatVector l11 = FloatVector.fromArray(F, c, o11), h11 = FloatVector.fromArray(F, c, o11 + L);
        for (int k = 0, xk = xOff; k < kc; k++, xk += NR) {
            FloatVector lo = FloatVector.fromArray(F, xt, xk);
            FloatVector hi = FloatVector.fromArray(F, xt, xk + L);
            int wk = wOff + k;
            FloatVector b = FloatVector.broadcast(F, w[wk]);
            l0 = b.fma(lo, l0);
            h0 = b.fma(hi, h0);
            b = FloatVector.broadcast(F, w[wk + kc]);
            l1 = b.fma(lo, l1);
            h1 = b.fma(hi, h1);
            b = FloatVector.broadcast(F, w[wk + 2 * kc]);
            l2 = b.fma(lo, l2);
            h2 = b.fma(hi, h2);
            b = FloatVector.broadcast(F, w[wk + 3 * kc]);
            l3 = b.fma(lo, l3);
            h3 = b.fma(hi, h3);
            b = FloatVector.broadcast(F, w[wk + 4 * kc]);
            l4 = b.fma(lo, l4);
            h4 = b.fma(hi, h4);
            b = FloatVector.broadcast(F, w[wk + 5 * kc]);
            l5 = b.fma(lo, l5);
            h5 = b.fma(hi, h5);
            b = FloatVector.broadcast(F, w[wk + 6 * kc]);
            l6 = b.fma(lo, l6);
            h6 = b.fma(hi, h6);
            b = FloatVector.broadcast(F, w[wk + 7 * kc]);
            l7 = b.fma(lo, l7);
            h7 = b.fma(hi, h7);
            b = FloatVector.broadcast(F, w[wk + 8 * kc]);
            l8 = b.fma(lo, l8);
            h8 = b.fma(hi, h8);
            b = FloatVector.broadcast(F, w[wk + 9 * kc]);
            l9 = b.fma(lo, l9);
            h9 = b.fma(hi, h9);
            b = FloatVector.broadcast(F, w[wk + 10 * kc]);
            l10 = b.fma(lo, l10);
            h10 = b.fma(hi, h10);
            b = FloatVector.broadcast(F, w[wk + 11 * kc]);
            l11 = b.fma(lo, l11);
            h11 = b.fma(hi, h11);
        }
        l0.intoArray(c, o0);
        h0.intoArray(c, o0 + L);
        l1.intoArray(c, o1);
        h1.intoArray(c, o1 + L);
        l2.intoArray(c, o2);
        h2.intoArray(c, o2 + L);
        l3.intoArray(c, o3);
        h3.intoArray(c, o3 + L);
        l4.intoArray(c, o4);
        h4.intoArray(c, o4 + L);
        l5.intoArray(c, o5);
        h5.intoArray(c, o5 + L);
        l6.intoArray(c, o6);
        h6.intoArray(c, o6 + L);
        l7.intoArray(c, o7);
        h7.intoArray(c, o7 + L);
        l8.intoArray(c, o8);
        h8.intoArray(c, o8 + L);
        l9.intoArray(c, o9);
        h9.intoArray(c, o9 + L);
        l10.intoArray(c, o10);
        h10.intoArray(c, o10 + L);
        l11.intoArray(c, o11);
        h11.intoArray(c, o11 + L);
    }

    /** The one-vector-wide variant of {@link #tile12x2}, for a last panel of at most L tokens. */
    private static void tile12x1(float[] w, int wOff, int kc, float[] xt, int xOff, float[] c, int cOff, int ldc) {
        int o0 = cOff, o1 = o0 + ldc, o2 = o1 + ldc, o3 = o2 + ldc, o4 = o3 + ldc, o5 = o4 + ldc;
        int o6 = o5 + ldc, o7 = o6 + ldc, o8 = o7 + ldc, o9 = o8 + ldc, o10 = o9 + ldc, o11 = o10 + ldc;
        FloatVector a0 = FloatVector.fromArray(F, c, o0), a1 = FloatVector.fromArray(F, c, o1);
        FloatVector a2 = FloatVector.fromArray(F, c, o2), a3 = FloatVector.fromArray(F, c, o3);
        FloatVector a4 = FloatVector.fromArray(F, c, o4), a5 = FloatVector.fromArray(F, c, o5);
        FloatVector a6 = FloatVector.fromArray(F, c, o6), a7 = FloatVector.fromArray(F, c, o7);
        FloatVector a8 = FloatVector.fromArray(F, c, o8), a9 = FloatVector.fromArray(F, c, o9);
        FloatVector a10 = FloatVector.fromArray(F, c, o10), a11 = FloatVector.fromArray(F, c, o11);
        for (int k = 0, xk = xOff; k < kc; k++, xk += L) {
            FloatVector v = FloatVector.fromArray(F, xt, xk);
            int wk = wOff + k;
            a0 = FloatVector.broadcast(F, w[wk]).fma(v, a0);
            a1 = FloatVector.broadcast(F, w[wk + kc]).fma(v, a1);
            a2 = FloatVector.broadcast(F, w[wk + 2 * kc]).fma(v, a2);
            a3 = FloatVector.broadcast(F, w[wk + 3 * kc]).fma(v, a3);
            a4 = FloatVector.broadcast(F, w[wk + 4 * kc]).fma(v, a4);
            a5 = FloatVector.broadcast(F, w[wk + 5 * kc]).fma(v, a5);
            a6 = FloatVector.broadcast(F, w[wk + 6 * kc]).fma(v, a6);
            a7 = FloatVector.broadcast(F, w[wk + 7 * kc]).fma(v, a7);
            a8 = FloatVector.broadcast(F, w[wk + 8 * kc]).fma(v, a8);
            a9 = FloatVector.broadcast(F, w[wk + 9 * kc]).fma(v, a9);
            a10 = FloatVector.broadcast(F, w[wk + 10 * kc]).fma(v, a10);
            a11 = FloatVector.broadcast(F, w[wk + 11 * kc]).fma(v, a11);
        }
        a0.intoArray(c, o0);
        a1.intoArray(c, o1);
        a2.intoArray(c, o2);
        a3.intoArray(c, o3);
        a4.intoArray(c, o4);
        a5.intoArray(c, o5);
        a6.intoArray(c, o6);
        a7.intoArray(c, o7);
        a8.intoArray(c, o8);
        a9.intoArray(c, o9);
        a10.intoArray(c, o10);
        a11.intoArray(c, o11);
    }
}
