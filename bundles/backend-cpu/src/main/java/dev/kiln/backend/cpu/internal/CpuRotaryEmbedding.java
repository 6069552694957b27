package dev.kiln.backend.cpu.internal;

import static dev.kiln.backend.cpu.internal.Conversions.F;
import static dev.kiln.backend.cpu.internal.Conversions.L;

import dev.kiln.api.backend.RotaryEmbedding;
import dev.kiln.backend.cpu.CpuTensor;
import dev.kiln.backend.cpu.WorkerPool;
import dev.kiln.api.tensor.Tensor;
import java.util.Objects;
import jdk.incubator.vector.FloatVector;

/**
 * Rotary position embedding with cos/sin tables per position, grown on demand (to the next power of two) as longer
 * positions appear.
 *
 * <p>Angles, cos, sin and the magnitude are computed in double precision and rounded once to float, so that the
 * only error at long positions is the float rounding of the given frequencies (a float32 product
 * {@code position · frequency} would add an error of the same size again).
 */
public final class CpuRotaryEmbedding implements RotaryEmbedding {
    /** Rotated elements of x per task when rows are spread over the pool. */
    private static final int PARALLEL_ELEMENTS = 1 << 15;

    private final float[] frequencies;
    private final float magnitude;
    private final Layout layout;
    private final WorkerPool pool;
    private volatile Tables tables = new Tables(0, new float[0], new float[0]);

    private record Tables(int positions, float[] cos, float[] sin) {}

    /**
     * @param inverseFrequencies one per rotated pair
     * @param magnitude          factor on cos and sin
     * @param layout             which elements pair up
     * @param pool               threads for long batches
     */
    public CpuRotaryEmbedding(float[] inverseFrequencies, float magnitude, Layout layout, WorkerPool pool) {
        if (inverseFrequencies.length == 0) throw new IllegalArgumentException("no rotary frequencies");
        this.frequencies = inverseFrequencies.clone();
        this.magnitude = magnitude;
        this.layout = Objects.requireNonNull(layout, "layout");
        this.pool = pool;
    }

    @Override
    public int rotaryDim() {
        return 2 * frequencies.length;
    }

    @Override
    public void apply(Tensor x, int[] positions, int heads, int headStride, int offset) {
        CpuTensor t = CpuTensor.f32(x);
        int rows = t.rowCount();
        int half = frequencies.length;
        if (positions.length < rows) {
            throw new IllegalArgumentException(positions.length + " positions for " + rows + " rows");
        }
        if (offset < 0 || offset + 2 * half > headStride) {
            throw new IllegalArgumentException("rotary part [" + offset + ", " + (offset + 2 * half)
                    + ") does not fit a head of " + headStride);
        }
        if ((long) heads * headStride > t.rowLength()) {
            throw new IllegalArgumentException(heads + " heads of " + headStride + " exceed rows of " + t.rowLength());
        }
        int maxPosition = -1;
        for (int r = 0; r < rows; r++) {
            if (positions[r] < 0) throw new IllegalArgumentException("negative position " + positions[r]);
            maxPosition = Math.max(maxPosition, positions[r]);
        }
        if (rows == 0) return;
        Tables tab = tablesFor(maxPosition);
        float[] data = t.array();
        int rowLength = t.rowLength();
        int base = t.offset();
        long work = (long) rows * heads * half;
        if (work < PARALLEL_ELEMENTS || pool.threads() == 1) {
            rotateRows(tab, data, base, rowLength, positions, 0, rows, heads, headStride, offset);
        } else {
            pool.parallelFor(rows, (worker, from, to) ->
                    rotateRows(tab, data, base, rowLength, positions, from, to, heads, headStride, offset));
        }
    }

    private void rotateRows(Tables tab, float[] data, int base, int rowLength, int[] positions, int from, int to,
                            int heads, int headStride, int offset) {
        int half = frequencies.length;
        float[] cos = tab.cos;
        float[] sin = tab.sin;
        for (int r = from; r < to; r++) {
            int table = positions[r] * half;
            for (int h = 0; h < heads; h++) {
                int start = base + r * rowLength + h * headStride + offset;
                if (layout == Layout.HALVES) rotateHalves(data, start, cos, sin, table, half);
                else rotateInterleaved(data, start, cos, sin, table, half);
            }
        }
    }

    private static void rotateHalves(float[] x, int start, float[] cos, float[] sin, int table, int half) {
        int i = 0;
        for (; i <= half - L; i += L) {
            FloatVector a = FloatVector.fromArray(F, x, start + i);
            FloatVector b = FloatVector.fromArray(F, x, start + half + i);
            FloatVector c = FloatVector.fromArray(F, cos, table + i);
            FloatVector s = FloatVector.fromArray(F, sin, table + i);
            a.mul(c).sub(b.mul(s)).intoArray(x, start + i);
            b.mul(c).add(a.mul(s)).intoArray(x, start + half + i);
        }
        for (; i < half; i++) {
            float a = x[start + i], b = x[start + half + i], c = cos[table + i], s = sin[table + i];
            x[start + i] = a * c - b * s;
            x[start + half + i] = b * c + a * s;
        }
    }

    private static void rotateInterleaved(float[] x, int start, float[] cos, float[] sin, int table, int half) {
        for (int i = 0; i < half; i++) {
            int e = start + 2 * i;
            float a = x[e], b = x[e + 1], c = cos[table + i], s = sin[table + i];
            x[e] = a * c - b * s;
            x[e + 1] = b * c + a * s;
        }
    }

    private Tables tablesFor(int maxPosition) {
        Tables tab = tables;
        if (maxPosition < tab.positions) return tab;
        synchronized (this) {
            tab = tables;
            if (maxPosition < tab.positions) return tab;
            int positions = Math.max(256, Integer.highestOneBit(maxPosition) << 1);
            int half = frequencies.length;
            float[] cos = new float[Math.multiplyExact(positions, half)];
            float[] sin = new float[cos.length];
            System.arraycopy(tab.cos, 0, cos, 0, tab.cos.length);
            System.arraycopy(tab.sin, 0, sin, 0, tab.sin.length);
            for (int p = tab.positions; p < positions; p++) {
                for (int i = 0; i < half; i++) {
                    double angle = (double) p * frequencies[i];
                    cos[p * half + i] = (float) (Math.cos(angle) * magnitude);
                    sin[p * half + i] = (float) (Math.sin(angle) * magnitude);
                }
            }
            tab = new Tables(positions, cos, sin);
            tables = tab;
            return tab;
        }
    }
}
