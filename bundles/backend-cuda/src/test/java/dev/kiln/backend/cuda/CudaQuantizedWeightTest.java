package dev.kiln.backend.cuda;

import static dev.kiln.backend.cuda.testing.Data.poison;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.backend.cuda.internal.CudaContext;
import dev.kiln.backend.cuda.internal.Kernels;
import dev.kiln.backend.cuda.internal.QuantizedWeight;
import dev.kiln.backend.cuda.quant.ChannelQuantization;
import dev.kiln.backend.cuda.quant.GroupQuantization;
import dev.kiln.backend.cuda.quant.OnLoadQuantization;
import dev.kiln.backend.cuda.testing.Data;
import dev.kiln.backend.cuda.testing.Gpu;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.function.IntFunction;
import java.util.function.Supplier;
import java.util.stream.IntStream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The device's INT8 and INT4 weights against float64 products with their dequantized matrices: 1..8 tokens (the
 * streaming GEMVs, split and not; rows of whole 64-column chunks the tensor-core kernels from 4 (INT8) or 3 (INT4)
 * tokens to 32) and 9..40 (the dequantizing prefill path, or those kernels), on shapes that end mid-group, mid-step
 * and mid-warp, and on widths the vectorized GEMV cannot take; row gathers; and a large weight: its device bytes
 * against bf16's, and a prefill that crosses a tile boundary. Outputs are filled with NaN first and one row more than
 * the product is allocated, which must stay NaN. Runs only where a CUDA device is.
 */
class CudaQuantizedWeightTest {
    /** Relative to the product's magnitude: f32 sums of at most ~1500 terms. */
    private static final double GEMV_TOLERANCE = 1e-5;
    /** Relative to the product's magnitude: activations (and INT4 weights) split into two bf16 parts, ~16 bits each. */
    private static final double PREFILL_TOLERANCE = 1e-4;
    private static final int[] TOKENS = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 24, 33, 40};

    private static CudaBackend gpu;
    private final Random random = new Random(7);

    @BeforeAll
    static void start() {
        gpu = Gpu.backend();
    }

    /** A format as the device stores it, and its host rule for the float64 reference. */
    record Format(String label, int groupSize) {
        static final Format INT8 = new Format("weight_only_int8", 0);
        static final Format INT4_G64 = new Format("weight_only_int4 g64", 64);
        static final Format INT4_G128 = new Format("weight_only_int4 g128", 128);

        QuantizedWeight load(CudaContext context, CheckpointTensor tensor) {
            return groupSize == 0 ? OnLoadQuantization.int8(context, tensor) : OnLoadQuantization.int4(context, tensor, groupSize);
        }

        /** A row of the dequantized matrix, in float64, by the same rule from the same values. */
        double[] dequantizedRow(float[] values) {
            int n = values.length;
            byte[] codes = new byte[n];
            double[] row = new double[n];
            if (groupSize == 0) {
                double scale = ChannelQuantization.quantizeRow(values, codes);
                for (int c = 0; c < n; c++) row[c] = codes[c] * scale;
            } else {
                float[] scales = new float[(n + groupSize - 1) / groupSize];
                GroupQuantization.quantizeRow(values, groupSize, codes, scales);
                for (int c = 0; c < n; c++) row[c] = (codes[c] - 8) * (double) scales[c / groupSize];
            }
            return row;
        }

        @Override
        public String toString() {
            return label;
        }
    }

    /**
     * Rows not a multiple of the 4 or 8 rows of a warp nor of a block's 16 or 32; widths ending mid-group (1552 =
     * 12·128 + 16, 208, 336, 160) and within the vectorized path (multiples of 16) or not (100, 77); 1536 rows as the
     * 1.5B model's (split kernels on an H100), 4500 rows (row-group kernels); widths of whole 64-column chunks (512,
     * 128), which products of 3 or 4 to 32 tokens take to the tensor cores.
     */
    static List<Object[]> cases() {
        int[][] shapes = {{301, 1552}, {37, 208}, {45, 16}, {1536, 336}, {4500, 48}, {3, 160}, {301, 100}, {29, 77},
                {301, 512}, {4500, 128}};
        List<Object[]> cases = new ArrayList<>();
        for (Format f : new Format[] {Format.INT8, Format.INT4_G64, Format.INT4_G128}) {
            for (int[] s : shapes) cases.add(new Object[] {f, s[0], s[1]});
        }
        return cases;
    }

    @ParameterizedTest(name = "{0} {1}x{2}")
    @MethodSource("cases")
    void productsAndGathersMatchFloat64WithTheDequantizedWeight(Format format, int rows, int columns) {
        float[] values = weights(rows, columns);
        try (QuantizedWeight weight = format.load(gpu.context(), Data.tensor("w", DType.BF16, values, rows, columns))) {
            assertEquals(format.groupSize == 0 ? "weight_only_int8" : "weight_only_int4", weight.format());
            double[][] dequantized = new double[rows][];
            for (int r = 0; r < rows; r++) dequantized[r] = format.dequantizedRow(row(values, columns, r));
            double worstGemv = 0, worstPrefill = 0;
            for (int tokens : TOKENS) {
                float[] x = Data.uniform(random, tokens * columns);
                double error = relativeError(weight, x, tokens, rows, columns, r -> dequantized[r]);
                // Rows of whole 64-column chunks take the tensor-core kernels from the format's skinnyMinTokens on (INT4
                // in groups of 64 or 128 columns too), which multiply the activations' bf16 parts as the prefill path does.
                boolean streamed = tokens <= 8 && !(columns % 64 == 0
                        && tokens >= Kernels.skinnyMinTokens(format.groupSize == 0 ? "int8" : "int4"));
                double bound = streamed ? GEMV_TOLERANCE : PREFILL_TOLERANCE;
                assertTrue(error <= bound, format + " " + rows + "x" + columns + ", " + tokens + " tokens: relative error "
                        + error + " > " + bound);
                if (streamed) worstGemv = Math.max(worstGemv, error);
                else worstPrefill = Math.max(worstPrefill, error);
            }
            int[] ids = {rows - 1, 0, rows / 2, rows - 1};
            try (Tensor out = gpu.allocate(DType.F32, ids.length + 1, columns)) {
                gpu.write(poison((ids.length + 1) * columns), out);
                weight.gatherRows(ids, out);
                float[] got = gpu.read(out);
                double worst = 0;
                for (int i = 0; i < ids.length; i++) {
                    for (int c = 0; c < columns; c++) {
                        double d = Math.abs(got[i * columns + c] - dequantized[ids[i]][c]);
                        if (!(d <= worst)) worst = d;
                    }
                }
                assertTrue(worst <= 1e-6 * Math.max(1, Data.maxAbs(values)), "gathered rows differ by " + worst);
                assertUntouched(got, ids.length * columns, "the row after the gathered ones");
            }
            System.out.printf("%s %dx%d: max relative error %.2e streamed, %.2e with split activations%n", format,
                    rows, columns, worstGemv, worstPrefill);
        }
    }

    /**
     * An 8192 x 4096 matrix: the device memory its quantized weight takes against the same matrix in bf16 (the free
     * memory the driver reports, before and after), and products of 1 and 9 tokens (the prefill dequantizes it in two
     * tiles).
     */
    @Test
    void aLargeWeightTakesItsBytesOnTheDeviceAndItsPrefillCrossesTiles() {
        int rows = 8192, columns = 4096;
        float[] values = weights(rows, columns);
        CheckpointTensor tensor = Data.tensor("w", DType.BF16, values, rows, columns);
        CudaContext context = gpu.context();
        context.quantKernels();
        Placed<Weight> dense = place(context, () -> gpu.denseWeight(tensor));
        long denseBytes = dense.deviceBytes();
        dense.weight().close();
        assertTrue(denseBytes >= 2L * rows * columns, "bf16 took " + denseBytes + " bytes");
        for (Format format : new Format[] {Format.INT8, Format.INT4_G64, Format.INT4_G128}) {
            Placed<QuantizedWeight> placed = place(context, () -> format.load(context, tensor));
            try (QuantizedWeight weight = placed.weight()) {
                long device = placed.deviceBytes();
                double ratio = (double) device / denseBytes;
                System.out.printf("%s %dx%d: %d bytes of codes and scales, %d on the device (bf16: %d), %.3f of bf16%n",
                        format, rows, columns, weight.bytes(), device, denseBytes, ratio);
                assertTrue(device >= weight.bytes() * 0.9 && device <= weight.bytes() + (8L << 20),
                        "the device lost " + device + " bytes for a weight of " + weight.bytes());
                double bound = format.groupSize == 0 ? 0.55 : format.groupSize == 64 ? 0.32 : 0.30;
                assertTrue(ratio <= bound, format + " takes " + ratio + " of bf16's device memory, more than " + bound);
                for (int tokens : new int[] {1, 9}) {
                    float[] x = Data.uniform(random, tokens * columns);
                    double error = relativeError(weight, x, tokens, rows, columns,
                            r -> format.dequantizedRow(row(values, columns, r)));
                    double bound2 = tokens == 1 ? GEMV_TOLERANCE : PREFILL_TOLERANCE;
                    System.out.printf("%s %dx%d, %d token(s): relative error %.2e%n", format, rows, columns, tokens, error);
                    assertTrue(error <= bound2, format + ", " + tokens + " tokens: relative error " + error);
                }
            }
        }
    }

    @Test
    void theQuantizersRefuseOtherBackendsAndTheCpuFormatsGroupSizesOnly() {
        assertTrue(new CudaInt8Quantizer().supports(gpu));
        assertTrue(new CudaInt4Quantizer(64).supports(gpu));
        var cpu = new CpuBackend(1);
        try {
            assertTrue(!new CudaInt8Quantizer().supports(cpu) && !new CudaInt4Quantizer().supports(cpu));
        } finally {
            cpu.shutdown();
        }
        var e = assertThrows(IllegalArgumentException.class, () -> new CudaInt4Quantizer(32));
        assertEquals("dev.kiln.quant.int4 group-size must be 64 or 128, not 32", e.getMessage());
    }

    /** A weight and the device memory placing it took. */
    private record Placed<W extends Weight>(W weight, long deviceBytes) {}

    /** Makes a weight, measuring the device's free memory before and after. */
    private static <W extends Weight> Placed<W> place(CudaContext context, Supplier<W> make) {
        gpu.synchronize();
        long before = context.memoryInfo()[0];
        W weight = make.get();
        gpu.synchronize();
        return new Placed<>(weight, before - context.memoryInfo()[0]);
    }

    /**
     * Max |product - float64 reference| over the magnitude of the reference (at least 1), after checking that the
     * row of out past the product stayed NaN.
     */
    private static double relativeError(Weight weight, float[] x, int tokens, int rows, int columns,
                                        IntFunction<double[]> dequantizedRow) {
        double[] expected = new double[tokens * rows];
        IntStream.range(0, rows).parallel().forEach(r -> {
            double[] w = dequantizedRow.apply(r);
            for (int t = 0; t < tokens; t++) {
                double sum = 0;
                for (int c = 0; c < columns; c++) sum += w[c] * x[t * columns + c];
                expected[t * rows + r] = sum;
            }
        });
        float[] got;
        try (Tensor in = gpu.allocate(DType.F32, tokens, columns); Tensor out = gpu.allocate(DType.F32, tokens + 1, rows)) {
            gpu.write(x, in);
            gpu.write(poison((tokens + 1) * rows), out);
            weight.multiply(in, out);
            got = gpu.read(out);
        }
        assertUntouched(got, tokens * rows, "the row after the product");
        double worst = 0, scale = 1;
        for (int i = 0; i < expected.length; i++) {
            double d = Math.abs(got[i] - expected[i]);
            if (!(d <= worst)) worst = d;
            scale = Math.max(scale, Math.abs(expected[i]));
        }
        return worst / scale;
    }

    private static void assertUntouched(float[] values, int from, String what) {
        for (int i = from; i < values.length; i++) {
            if (!Float.isNaN(values[i])) throw new AssertionError(what + " was written at " + (i - from) + ": " + values[i]);
        }
    }

    /** Values bf16 holds exactly, rows of different magnitudes and one row of zeros (scale 0). */
    private float[] weights(int rows, int columns) {
        float[] values = Data.uniform(random, rows * columns);
        for (int r = 0; r < rows; r++) {
            float magnitude = r == rows / 3 ? 0 : (float) Math.pow(10, random.nextInt(4) - 2);
            for (int c = r * columns; c < (r + 1) * columns; c++) {
                values[c] = Float.intBitsToFloat(Float.floatToRawIntBits(values[c] * magnitude) & 0xffff0000);
            }
        }
        return values;
    }

    private static float[] row(float[] values, int columns, int r) {
        return Arrays.copyOfRange(values, r * columns, (r + 1) * columns);
    }
}
