package dev.kiln.backend.cpu.internal;

import static dev.kiln.backend.cpu.internal.Conversions.F;
import static dev.kiln.backend.cpu.internal.Conversions.L;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

/** Vectorised element-wise and per-row operations on one row of f32 values. */
public final class RowKernels {
    private RowKernels() {}

    /** {@code out = x / sqrt(mean(x²) + eps) · scale} over {@code n} elements; out may alias x. */
    public static void rmsNorm(float[] x, int xo, float[] scale, int so, float eps, float[] out, int oo, int n) {
        FloatVector acc = FloatVector.zero(F);
        int i = 0;
        for (; i <= n - L; i += L) {
            FloatVector v = FloatVector.fromArray(F, x, xo + i);
            acc = v.fma(v, acc);
        }
        float sum = acc.reduceLanes(VectorOperators.ADD);
        for (; i < n; i++) sum += x[xo + i] * x[xo + i];
        float inv = (float) (1.0 / Math.sqrt(sum / n + eps));
        i = 0;
        for (; i <= n - L; i += L) {
            FloatVector v = FloatVector.fromArray(F, x, xo + i);
            v.mul(inv).mul(FloatVector.fromArray(F, scale, so + i)).intoArray(out, oo + i);
        }
        for (; i < n; i++) out[oo + i] = x[xo + i] * inv * scale[so + i];
    }

    /** {@code acc += x} over {@code n} elements. */
    public static void add(float[] acc, int ao, float[] x, int xo, int n) {
        int i = 0;
        for (; i <= n - L; i += L) {
            FloatVector.fromArray(F, acc, ao + i).add(FloatVector.fromArray(F, x, xo + i)).intoArray(acc, ao + i);
        }
        for (; i < n; i++) acc[ao + i] += x[xo + i];
    }

    /** {@code out = silu(gate) · up} over {@code n} elements, {@code silu(g) = g / (1 + e^-g)}; out may alias gate or up. */
    public static void siluAndMul(float[] gate, int go, float[] up, int uo, float[] out, int oo, int n) {
        int i = 0;
        for (; i <= n - L; i += L) {
            FloatVector g = FloatVector.fromArray(F, gate, go + i);
            FloatVector u = FloatVector.fromArray(F, up, uo + i);
            FloatVector e = g.neg().lanewise(VectorOperators.EXP);
            g.div(e.add(1f)).mul(u).intoArray(out, oo + i);
        }
        for (; i < n; i++) {
            float g = gate[go + i];
            out[oo + i] = (float) (g / (1.0 + Math.exp(-g))) * up[uo + i];
        }
    }

    /** {@code acc += factor · x} over {@code n} elements. */
    public static void addScaled(float[] acc, int ao, float[] x, int xo, float factor, int n) {
        int i = 0;
        for (; i <= n - L; i += L) {
            FloatVector.fromArray(F, x, xo + i).fma(FloatVector.broadcast(F, factor), FloatVector.fromArray(F, acc, ao + i)).intoArray(acc, ao + i);
        }
        for (; i < n; i++) acc[ao + i] = Math.fma(factor, x[xo + i], acc[ao + i]);
    }

    /** {@code x *= factor} over {@code n} elements. */
    public static void scale(float[] x, int xo, float factor, int n) {
        int i = 0;
        for (; i <= n - L; i += L) FloatVector.fromArray(F, x, xo + i).mul(factor).intoArray(x, xo + i);
        for (; i < n; i++) x[xo + i] *= factor;
    }
}
