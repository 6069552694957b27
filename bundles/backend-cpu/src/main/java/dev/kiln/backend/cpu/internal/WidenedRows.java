package dev.kiln.backend.cpu.internal;

import static dev.kiln.backend.cpu.internal.Conversions.F;
import static dev.kiln.backend.cpu.internal.Conversions.L;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

/**
 * The streaming kernel shared by formats that widen weight rows to f32 in a small per-thread buffer first (f16,
 * f32): four rows at a time are widened into L1-resident scratch, then dotted with every activation row.
 */
final class WidenedRows {
    /** Weight rows widened per step. */
    static final int ROWS = 4;

    private WidenedRows() {}

    /** Loads weight rows into a buffer. */
    @FunctionalInterface
    interface Loader {
        void load(int row, int column, int count, float[] dst, int dstOffset);
    }

    /**
     * {@code out[t, r] = x[t] · W[r]} for rows {@code r0 .. r0+ROWS-1} (clamped to {@code rows}) and every token.
     */
    static void multiply(Loader loader, int rows, int columns, int r0, float[] buffer, float[] x, int xOffset,
                         int tokens, float[] out, int outOffset) {
        int count = Math.min(ROWS, rows - r0);
        for (int i = 0; i < count; i++) loader.load(r0 + i, 0, columns, buffer, i * columns);
        for (int i = count; i < ROWS; i++) System.arraycopy(buffer, 0, buffer, i * columns, columns);
        for (int t = 0; t < tokens; t++) {
            int xo = xOffset + t * columns;
            int w1 = columns, w2 = 2 * columns, w3 = 3 * columns;
            FloatVector a0 = FloatVector.zero(F), a1 = FloatVector.zero(F), a2 = FloatVector.zero(F), a3 = FloatVector.zero(F);
            int c = 0;
            for (; c <= columns - L; c += L) {
                FloatVector xv = FloatVector.fromArray(F, x, xo + c);
                a0 = FloatVector.fromArray(F, buffer, c).fma(xv, a0);
                a1 = FloatVector.fromArray(F, buffer, w1 + c).fma(xv, a1);
                a2 = FloatVector.fromArray(F, buffer, w2 + c).fma(xv, a2);
                a3 = FloatVector.fromArray(F, buffer, w3 + c).fma(xv, a3);
            }
            float s0 = a0.reduceLanes(VectorOperators.ADD), s1 = a1.reduceLanes(VectorOperators.ADD);
            float s2 = a2.reduceLanes(VectorOperators.ADD), s3 = a3.reduceLanes(VectorOperators.ADD);
            for (; c < columns; c++) {
                float xc = x[xo + c];
                s0 += xc * buffer[c];
                s1 += xc * buffer[w1 + c];
                s2 += xc * buffer[w2 + c];
                s3 += xc * buffer[w3 + c];
            }
            int o = outOffset + t * rows + r0;
            out[o] = s0;
            if (count > 1) out[o + 1] = s1;
            if (count > 2) out[o + 2] = s2;
            if (count > 3) out[o + 3] = s3;
        }
    }
}
