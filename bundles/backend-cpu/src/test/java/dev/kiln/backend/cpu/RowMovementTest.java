package dev.kiln.backend.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/** Column copies, row gathers and scatter-adds (MLA head splitting, MoE dispatch) against plain loops. */
class RowMovementTest {
    private static final CpuBackend BACKEND = new CpuBackend(2);

    @AfterAll
    static void stop() {
        BACKEND.shutdown();
    }

    private static Tensor tensor(float[] values, int rows, int cols) {
        Tensor t = BACKEND.allocate(DType.F32, rows, cols);
        BACKEND.write(values, t);
        return t;
    }

    private static float[] random(Random r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) r.nextGaussian();
        return v;
    }

    @Test
    void copyColumnsMovesABandOfEveryRowAndNothingElse() {
        Random r = new Random(3);
        float[] src = random(r, 5 * 37);
        float[] dst = random(r, 6 * 41);
        Tensor s = tensor(src, 5, 37), d = tensor(dst, 6, 41);
        BACKEND.copyColumns(s, 9, d, 17, 19);
        float[] expected = dst.clone();
        for (int row = 0; row < 5; row++) System.arraycopy(src, row * 37 + 9, expected, row * 41 + 17, 19);
        assertArrayEquals(expected, BACKEND.read(d));
        assertThrows(IllegalArgumentException.class, () -> BACKEND.copyColumns(s, 30, d, 0, 8));
        assertThrows(IllegalArgumentException.class, () -> BACKEND.copyColumns(s, 0, d, 35, 7));
        // Offsets whose sum with the width overflows an int (the CUDA backend shares this check).
        assertThrows(IllegalArgumentException.class, () -> BACKEND.copyColumns(s, Integer.MAX_VALUE, d, 0, 1));
        assertThrows(IllegalArgumentException.class, () -> BACKEND.copyColumns(s, 0, d, Integer.MAX_VALUE, 1));
        assertThrows(IllegalArgumentException.class,
                () -> ComputeBackend.requireColumnRanges(s, Integer.MAX_VALUE, 0, d, 0, 0, 1, 1));
    }

    /** Several ranges at once (a part of every head), through the API's default; overlapping destinations refused. */
    @Test
    void copyColumnsOfSeveralRangesMovesEachBand() {
        Random r = new Random(5);
        float[] src = random(r, 4 * 50);
        float[] dst = random(r, 4 * 70);
        Tensor s = tensor(src, 4, 50), d = tensor(dst, 4, 70);
        BACKEND.copyColumns(s, 2, 12, d, 5, 20, 8, 3);
        float[] expected = dst.clone();
        for (int row = 0; row < 4; row++) {
            for (int k = 0; k < 3; k++) System.arraycopy(src, row * 50 + 2 + 12 * k, expected, row * 70 + 5 + 20 * k, 8);
        }
        assertArrayEquals(expected, BACKEND.read(d));
        assertThrows(IllegalArgumentException.class, () -> BACKEND.copyColumns(s, 2, 21, d, 5, 20, 8, 3));
        assertThrows(IllegalArgumentException.class, () -> BACKEND.copyColumns(s, 2, 12, d, 5, 4, 8, 3));
        assertThrows(IllegalArgumentException.class, () -> BACKEND.copyColumns(s, 2, -1, d, 5, 20, 8, 3));
    }

    @Test
    void gatherThenScatterAddRoutesRowsWithWeightsAndRepeats() {
        Random r = new Random(4);
        int n = 67;
        float[] src = random(r, 7 * n);
        Tensor s = tensor(src, 7, n);
        int[] rows = {6, 0, 3, 3};
        Tensor gathered = BACKEND.allocate(DType.F32, 8, n);
        BACKEND.gatherRows(s, rows, gathered.rows(rows.length));
        float[] g = BACKEND.read(gathered.rows(rows.length));
        for (int i = 0; i < rows.length; i++) {
            for (int j = 0; j < n; j++) assertEquals(src[rows[i] * n + j], g[i * n + j]);
        }
        float[] acc = random(r, 7 * n);
        Tensor a = tensor(acc, 7, n);
        float[] scales = {0.5f, -2f, 1.25f, 0.75f};
        BACKEND.scatterAddRows(gathered.rows(rows.length), rows, scales, a);
        float[] expected = acc.clone();
        for (int i = 0; i < rows.length; i++) {
            for (int j = 0; j < n; j++) expected[rows[i] * n + j] += scales[i] * g[i * n + j];
        }
        assertArrayEquals(expected, BACKEND.read(a), 1e-5f);
        assertThrows(IllegalArgumentException.class, () -> BACKEND.gatherRows(s, new int[] {7}, gathered));
        assertThrows(IllegalArgumentException.class, () -> BACKEND.scatterAddRows(gathered.rows(1), new int[] {9}, new float[] {1}, a));
    }

    @Test
    void scaleMultipliesEveryElement() {
        float[] v = random(new Random(5), 3 * 50);
        Tensor t = tensor(v, 3, 50);
        BACKEND.scale(t, -0.25f);
        float[] out = BACKEND.read(t);
        for (int i = 0; i < v.length; i++) assertEquals(v[i] * -0.25f, out[i]);
    }
}
