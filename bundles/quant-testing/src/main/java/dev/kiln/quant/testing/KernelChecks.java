package dev.kiln.quant.testing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.tensor.DType;
import dev.kiln.backend.cpu.CpuTensor;
import java.util.Arrays;
import java.util.Random;

/**
 * Checks of a weight's kernels against float64 products with its dequantized matrix, for every kernel path: one
 * activation row (decode), a few, and many (prefill), on both sides of each switch.
 */
public final class KernelChecks {
    /** Token counts covering one row, the few-row path and the prefill path, with partial panels. */
    private static final int[] TOKEN_COUNTS = {1, 2, 3, 5, 15, 16, 37, 70};
    /** Relative bound for f32 kernels: far above f32 rounding of these sums (~1e-7), far below any wrong term. */
    public static final double RELATIVE_BOUND = 1e-5;

    private KernelChecks() {}

    /**
     * Asserts {@code out = x · Wᵀ} for random activations against {@code dense} (the dequantized matrix, row-major,
     * float64) within {@link #RELATIVE_BOUND} of {@code Σ_c |x_c| · magnitude[r, c]}, where {@code magnitude} is the
     * size of what the kernels add up per element (e.g. {@code (u + z)·|s|} when a kernel subtracts the zero point's
     * share separately); that rows past the batch are left alone; that {@code gatherRows} returns the dequantized
     * values rounded to f32; and that mismatched shapes are refused.
     *
     * @return the largest error seen, relative to its bound's magnitude
     */
    public static double assertProducts(Weight weight, double[] dense, double[] magnitude, Random random) {
        int rows = weight.rows(), columns = weight.columns();
        double worst = 0;
        for (int tokens : TOKEN_COUNTS) {
            float[] x = new float[tokens * columns];
            for (int i = 0; i < x.length; i++) x[i] = (float) random.nextGaussian();
            CpuTensor in = CpuTensor.wrap(x, 0, tokens, columns);
            CpuTensor out = CpuTensor.allocate(DType.F32, tokens + 2, rows);
            Arrays.fill(out.array(), 12345f);
            weight.multiply(in, out);
            for (int t = 0; t < tokens; t++) {
                for (int r = 0; r < rows; r++) {
                    double expected = 0, size = 0;
                    for (int c = 0; c < columns; c++) {
                        expected += x[t * columns + c] * dense[r * columns + c];
                        size += Math.abs(x[t * columns + c]) * magnitude[r * columns + c];
                    }
                    float actual = out.array()[t * rows + r];
                    double error = Math.abs(expected - actual);
                    if (size > 0) worst = Math.max(worst, error / size);
                    assertTrue(error <= RELATIVE_BOUND * size, tokens + " tokens: out[" + t + ", " + r + "] = " + actual
                            + ", expected " + expected);
                }
            }
            for (int i = tokens * rows; i < out.array().length; i++) assertEquals(12345f, out.array()[i], "a row past the batch");
        }
        int[] ids = {rows - 1, 0, rows / 2};
        CpuTensor gathered = CpuTensor.allocate(DType.F32, ids.length, columns);
        weight.gatherRows(ids, gathered);
        for (int i = 0; i < ids.length; i++) {
            for (int c = 0; c < columns; c++) {
                assertEquals((float) dense[ids[i] * columns + c], gathered.array()[i * columns + c], "row " + ids[i] + ", column " + c);
            }
        }
        assertThrows(IllegalArgumentException.class,
                () -> weight.multiply(CpuTensor.allocate(DType.F32, 1, columns + 1), CpuTensor.allocate(DType.F32, 1, rows)));
        assertThrows(IllegalArgumentException.class,
                () -> weight.multiply(CpuTensor.allocate(DType.F32, 3, columns), CpuTensor.allocate(DType.F32, 2, rows)));
        assertThrows(IndexOutOfBoundsException.class, () -> weight.gatherRows(new int[] {rows}, gathered));
        System.out.printf("%s: largest error %.1e of the summed magnitudes%n", weight, worst);
        return worst;
    }

    /** The matrix of a weight read through its own kernel (identity rows times Wᵀ), row-major {@code [rows, columns]}. */
    public static float[] matrix(Weight weight) {
        int n = weight.columns();
        CpuTensor identity = CpuTensor.allocate(DType.F32, n, n);
        for (int i = 0; i < n; i++) identity.array()[i * n + i] = 1f;
        CpuTensor transposed = CpuTensor.allocate(DType.F32, n, weight.rows());
        weight.multiply(identity, transposed);
        float[] out = new float[weight.rows() * n];
        for (int c = 0; c < n; c++) {
            for (int r = 0; r < weight.rows(); r++) out[r * n + c] = transposed.array()[c * weight.rows() + r];
        }
        return out;
    }
}
