package dev.kiln.quant.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.tensor.DType;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.backend.cpu.CpuTensor;
import dev.kiln.quant.testing.KernelChecks;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Every kernel path (one token, a few, prefill) against a float64 product with the dequantized matrix
 * {@code (u - z) · s}, symmetric and with zero points, on shapes whose columns are not a multiple of the group or
 * of the kernels' block (a partial last group), odd row counts, more rows than one prefill work item and more
 * columns than one decoded tile; the packed codes, scales and zero points read back; invalid input refused.
 */
class Int4GroupWeightTest {
    private static final CpuBackend BACKEND = new CpuBackend(2);
    private static final KernelScratch SCRATCH = KernelScratch.of(BACKEND.pool());

    @AfterAll
    static void stop() {
        BACKEND.shutdown();
    }

    /**
     * A random weight, its values in float64, and per element the magnitude the kernels handle: {@code (u + z)·|s|},
     * since the decode kernel sums {@code s·u·x} and subtracts {@code s·z·x} per group.
     */
    record Sample(Int4GroupWeight weight, double[] dense, double[] magnitude) {}

    static Sample sample(int rows, int columns, int groupSize, boolean zeroPoints, long seed) {
        return sample(rows, columns, groupSize, zeroPoints, seed, false);
    }

    static Sample sample(int rows, int columns, int groupSize, boolean zeroPoints, long seed, boolean int8Activations) {
        Random random = new Random(seed);
        var builder = new Int4GroupWeight.Builder(rows, columns, groupSize, zeroPoints);
        int groups = builder.groups();
        assertEquals((columns + groupSize - 1) / groupSize, groups);
        double[] dense = new double[rows * columns];
        double[] magnitude = new double[rows * columns];
        for (int r = 0; r < rows; r++) {
            byte[] codes = new byte[columns];
            float[] scales = new float[groups];
            byte[] zeros = zeroPoints ? new byte[groups] : null;
            for (int g = 0; g < groups; g++) {
                scales[g] = (float) ((random.nextBoolean() ? 1 : -1) * Math.scalb(0.5 + random.nextDouble(), -random.nextInt(3, 10)));
                if (zeroPoints) zeros[g] = (byte) random.nextInt(16);
            }
            for (int c = 0; c < columns; c++) {
                codes[c] = (byte) random.nextInt(16);
                int g = c / groupSize;
                int z = zeroPoints ? zeros[g] : 8;
                dense[r * columns + c] = (codes[c] - z) * (double) scales[g];
                magnitude[r * columns + c] = (codes[c] + z) * Math.abs((double) scales[g]);
            }
            builder.setRow(r, codes, scales, zeros);
        }
        return new Sample(builder.build("weight_only_int4", BACKEND.pool(), SCRATCH, int8Activations), dense, magnitude);
    }

    @ParameterizedTest
    @CsvSource({
        // rows, columns, group size, zero points
        "200, 300, 128, false",
        "70, 200, 64, false",
        "33, 1000, 256, true",
        "81, 136, 32, true",
        "9, 77, 32, false",
        "64, 512, 128, true",
        "5, 16, 16, true",
        "130, 320, 64, true"
    })
    void everyPathComputesTheDequantizedProduct(int rows, int columns, int groupSize, boolean zeroPoints) {
        Sample s = sample(rows, columns, groupSize, zeroPoints, rows * 131L + columns);
        try (Int4GroupWeight weight = s.weight()) {
            KernelChecks.assertProducts(weight, s.dense(), s.magnitude(), new Random(columns));
            int groups = (columns + groupSize - 1) / groupSize;
            int unit = Math.max(Int4GroupWeight.BLOCK, groupSize) % Math.min(Int4GroupWeight.BLOCK, groupSize) == 0
                    ? Math.max(Int4GroupWeight.BLOCK, groupSize) : Int4GroupWeight.BLOCK * groupSize;
            int depth = (columns + unit - 1) / unit * unit;
            assertEquals(depth, weight.depth());
            assertEquals((long) rows * depth / 2 + 4L * rows * (depth / groupSize)
                    + (zeroPoints ? (long) rows * (depth / groupSize) : 0), weight.bytes());
            assertTrue(weight.bytes() < 0.6 * rows * columns + 5.0 * rows * groups + rows * 128,
                    "about half a byte per weight plus the scales");
        }
    }

    /**
     * The decode kernel with 8-bit activations against the float64 product: within what rounding the activations
     * to steps of {@code max|x| / 127} per block can change ({@code Σ_c |W[r, c]| · step(c) / 2}) plus f32 noise,
     * with outlier activations, zero points, partial last groups and odd rows. Group sizes it does not handle keep the
     * exact kernel.
     */
    @ParameterizedTest
    @CsvSource({
        "200, 300, 128, false",
        "70, 200, 64, false",
        "33, 1000, 256, true",
        "130, 1536, 128, false",
        "41, 520, 64, true",
        "9, 77, 32, false"
    })
    void int8ActivationsStayWithinTheirRounding(int rows, int columns, int groupSize, boolean zeroPoints) {
        Sample s = sample(rows, columns, groupSize, zeroPoints, rows * 7L + columns, true);
        try (Int4GroupWeight weight = s.weight()) {
            boolean quantized = Int4GroupWeight.supportsInt8Activations(groupSize);
            assertEquals(quantized, weight.int8Activations());
            Random random = new Random(columns);
            float[] x = new float[columns];
            for (int c = 0; c < columns; c++) x[c] = (float) (random.nextGaussian() * (random.nextInt(50) == 0 ? 20 : 1));
            CpuTensor out = CpuTensor.allocate(DType.F32, 1, rows);
            weight.multiply(CpuTensor.wrap(x, 0, 1, columns), out);
            double[] step = new double[columns];
            for (int c = 0; c < columns; c++) {
                int block = c / Int4GroupWeight.BLOCK;
                double amax = 0;
                for (int d = block * Int4GroupWeight.BLOCK; d < Math.min(columns, (block + 1) * Int4GroupWeight.BLOCK); d++) {
                    amax = Math.max(amax, Math.abs(x[d]));
                }
                step[c] = quantized ? amax / 127 : 0;
            }
            double worst = 0;
            for (int r = 0; r < rows; r++) {
                double expected = 0, rounding = 0, size = 0;
                for (int c = 0; c < columns; c++) {
                    double w = s.dense()[r * columns + c];
                    expected += x[c] * w;
                    rounding += Math.abs(w) * step[c] / 2;
                    size += Math.abs(x[c]) * s.magnitude()[r * columns + c];
                }
                double error = Math.abs(expected - out.array()[r]);
                double bound = rounding + KernelChecks.RELATIVE_BOUND * size;
                worst = Math.max(worst, error / bound);
                assertTrue(error <= bound, "out[" + r + "] = " + out.array()[r] + ", expected " + expected + " within " + bound);
            }
            System.out.printf("%s int8 activations: largest error %.2f of the bound%n", weight, worst);
        }
    }

    @Test
    void accessorsReturnWhatWasPacked() {
        Random random = new Random(5);
        int rows = 3, columns = 300, group = 64;
        var builder = new Int4GroupWeight.Builder(rows, columns, group, true);
        byte[][] codes = new byte[rows][columns];
        float[][] scales = new float[rows][builder.groups()];
        byte[][] zeros = new byte[rows][builder.groups()];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < columns; c++) codes[r][c] = (byte) random.nextInt(16);
            for (int g = 0; g < builder.groups(); g++) {
                scales[r][g] = random.nextFloat();
                zeros[r][g] = (byte) random.nextInt(16);
            }
            builder.setRow(r, codes[r], scales[r], zeros[r]);
        }
        try (Int4GroupWeight weight = builder.build("awq", BACKEND.pool(), SCRATCH)) {
            assertEquals("awq", weight.format());
            assertTrue(weight.hasZeroPoints());
            for (int r = 0; r < rows; r++) {
                for (int c = 0; c < columns; c++) assertEquals(codes[r][c], weight.code(r, c), "[" + r + ", " + c + "]");
                for (int g = 0; g < builder.groups(); g++) {
                    assertEquals(scales[r][g], weight.scale(r, g));
                    assertEquals(zeros[r][g], weight.zero(r, g));
                }
            }
            assertThrows(IndexOutOfBoundsException.class, () -> weight.code(0, columns));
        }
    }

    @Test
    void invalidInputsAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> new Int4GroupWeight.Builder(4, 64, 0, false));
        assertThrows(IllegalArgumentException.class, () -> new Int4GroupWeight.Builder(4, 64, 3, false));
        assertThrows(IllegalArgumentException.class, () -> new Int4GroupWeight.Builder(0, 64, 32, false));
        var builder = new Int4GroupWeight.Builder(2, 64, 32, false);
        byte[] codes = new byte[64];
        codes[5] = 16;
        assertThrows(IllegalArgumentException.class, () -> builder.setRow(0, codes, new float[2], null));
        assertThrows(IllegalArgumentException.class, () -> builder.setRow(0, new byte[64], new float[2], new byte[2]));
        assertThrows(IllegalArgumentException.class, () -> builder.setRow(0, new byte[64], new float[] {1, Float.NaN}, null));
        assertThrows(IndexOutOfBoundsException.class, () -> builder.setRow(2, new byte[64], new float[2], null));
        builder.discard();
        assertThrows(IllegalStateException.class, () -> builder.setRow(0, new byte[64], new float[2], null));
    }
}
