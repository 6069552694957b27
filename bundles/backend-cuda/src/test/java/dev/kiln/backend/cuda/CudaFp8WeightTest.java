package dev.kiln.backend.cuda;

import static dev.kiln.backend.cuda.testing.Data.poison;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.backend.cpu.CpuTensor;
import dev.kiln.backend.cuda.internal.CudaContext;
import dev.kiln.backend.cuda.internal.Fp8Weight;
import dev.kiln.backend.cuda.internal.Kernels;
import dev.kiln.backend.cuda.quant.Fp8Blocks;
import dev.kiln.backend.cuda.testing.Data;
import dev.kiln.backend.cuda.testing.Fixtures;
import dev.kiln.backend.cuda.testing.Gpu;
import dev.kiln.loader.safetensors.SafetensorsCheckpointLoader;
import dev.kiln.quant.fp8.Fp8Quantizer;
import dev.kiln.quant.fp8.internal.BlockQuantization;
import dev.kiln.quant.fp8.internal.Fp8BlockWeight;
import dev.kiln.quant.fp8.internal.KernelScratch;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Supplier;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The device's FP8 block weights against float64 products with their dequantized matrices, the matrices as the CPU
 * bundle's {@code fp8} weight of the same codes and scales gives them ({@code code · scale} in f32): 1..8 tokens (the
 * streaming GEMVs, split and not, and the any-shape GEMV) and 9..40 (the dequantizing prefill path), on shapes ending
 * mid-block in both directions, mid-step and mid-warp, with DeepSeek's 128×128 blocks and others (step-aligned,
 * not step-aligned, smaller than a warp's rows); codes read as stored (every code value present) and quantized on
 * load; row gathers equal to the CPU's bit for bit; a NaN code makes its row NaN and only its row; the fixture's
 * layers through the quantizer; a large weight's device bytes against bf16's, and a prefill over two tiles. Outputs
 * are filled with NaN first and one row more than the product is allocated, which must stay NaN. Runs only where a
 * CUDA device is.
 */
class CudaFp8WeightTest {
    /** Relative to the product's magnitude: f32 sums of at most ~1500 terms. */
    private static final double GEMV_TOLERANCE = 1e-5;
    /** Relative to the product's magnitude: weights and activations split into two bf16 parts, ~16 bits each. */
    private static final double PREFILL_TOLERANCE = 1e-4;
    private static final int[] TOKENS = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 24, 33, 40};

    private static CudaBackend gpu;
    private static CpuBackend cpu;
    private static KernelScratch scratch;
    private final Random random = new Random(11);

    @BeforeAll
    static void start() {
        gpu = Gpu.backend();
        cpu = new CpuBackend(2);
        scratch = new KernelScratch(cpu.pool().threads());
    }

    @AfterAll
    static void stop() {
        if (cpu != null) cpu.shutdown();
    }

    /** A weight on the device and its matrix as the CPU bundle dequantizes the same codes and scales. */
    private record Loaded(Fp8Weight weight, float[] matrix) {}

    /**
     * Rows not a multiple of a warp's 4 or 8 rows nor of a block's; widths ending mid-block (1552 = 12·128 + 16, 272,
     * 336, 208), mid-step (100, 77, 129: the any-shape GEMV), one step (16); 1536 rows as the 1.5B model's (split
     * kernels on an H100), 4500 rows (row-group kernels). Stored codes also in blocks of 64×32 (another step-aligned
     * width), 100×48 (three steps: the any-shape GEMV) and 7×40 (row blocks inside a warp's rows).
     */
    static List<Object[]> cases() {
        int[][] shapes = {{301, 1552}, {37, 208}, {130, 272}, {1536, 336}, {4500, 48}, {3, 160}, {45, 16}, {301, 100},
                {29, 77}, {257, 129}, {301, 512}, {4500, 320}};
        List<Object[]> cases = new ArrayList<>();
        for (int[] s : shapes) {
            cases.add(new Object[] {"quantized on load", s[0], s[1], 128, 128});
            cases.add(new Object[] {"stored", s[0], s[1], 128, 128});
        }
        for (int[] block : new int[][] {{64, 32}, {100, 48}, {7, 40}}) {
            for (int[] s : new int[][] {{301, 1552}, {130, 272}, {29, 77}, {301, 512}}) {
                cases.add(new Object[] {"stored", s[0], s[1], block[0], block[1]});
            }
        }
        return cases;
    }

    @ParameterizedTest(name = "{0} {1}x{2} in blocks of {3}x{4}")
    @MethodSource("cases")
    void productsAndGathersMatchFloat64WithTheDequantizedWeight(String kind, int rows, int columns, int blockRows,
                                                                int blockColumns) {
        Loaded loaded = kind.equals("stored") ? stored(rows, columns, blockRows, blockColumns, false)
                : quantizedOnLoad(rows, columns);
        try (Fp8Weight weight = loaded.weight()) {
            assertEquals("fp8", weight.format());
            assertEquals((long) rows * Fp8Weight.rowBytes(columns)
                    + 4L * Fp8Weight.blocks(rows, blockRows) * Fp8Weight.blocks(columns, blockColumns), weight.bytes());
            double worstGemv = 0, worstPrefill = 0;
            for (int tokens : TOKENS) {
                float[] x = Data.uniform(random, tokens * columns);
                double error = relativeError(weight, x, tokens, loaded.matrix());
                // Rows of whole 64-column chunks in blocks of a multiple of 64 columns take the tensor-core kernels from
                // the format's skinnyMinTokens to 32 tokens, which multiply the activations' bf16 parts as the prefill path does.
                boolean streamed = tokens <= 8 && !(columns % 64 == 0 && blockColumns % 64 == 0
                        && tokens >= Kernels.skinnyMinTokens("fp8"));
                double bound = streamed ? GEMV_TOLERANCE : PREFILL_TOLERANCE;
                assertTrue(error <= bound, kind + " " + rows + "x" + columns + " in blocks of " + blockRows + "x"
                        + blockColumns + ", " + tokens + " tokens: relative error " + error + " > " + bound);
                if (streamed) worstGemv = Math.max(worstGemv, error);
                else worstPrefill = Math.max(worstPrefill, error);
            }
            assertGathersLikeTheCpu(weight, loaded.matrix(), new int[] {rows - 1, 0, rows / 2, rows - 1});
            System.out.printf("fp8 %s %dx%d in blocks of %dx%d: max relative error %.2e streamed, %.2e with split "
                    + "activations; gathered rows identical to the CPU's%n", kind, rows, columns, blockRows,
                    blockColumns, worstGemv, worstPrefill);
        }
    }

    /** Every row gathered: each of the 254 finite codes is decoded by the kernel exactly as the CPU decodes it. */
    @Test
    void everyCodeIsDecodedExactlyAsTheCpuDecodesIt() {
        Loaded loaded = stored(64, 272, 128, 128, false);
        try (Fp8Weight weight = loaded.weight()) {
            assertGathersLikeTheCpu(weight, loaded.matrix(), IntStream.range(0, 64).toArray());
        }
    }

    /**
     * A NaN code (S.1111.111) gives its row NaN for every token on every path, as a product with a NaN weight does,
     * and leaves the other rows as they were.
     */
    @ParameterizedTest(name = "{0} columns")
    @ValueSource(ints = {160, 77, 128}) // 128: the tensor-core kernels from skinnyMinTokens to 32 tokens
    void aNanCodeMakesItsRowNaNAndOnlyItsRow(int columns) {
        int rows = 40;
        Loaded loaded = stored(rows, columns, 128, 128, true);
        try (Fp8Weight weight = loaded.weight()) {
            for (int tokens : new int[] {1, 4, 8, 9, 40}) {
                float[] x = Data.uniform(random, tokens * columns);
                float[] got = product(weight, x, tokens, rows);
                double[] expected = float64Product(loaded.matrix(), x, tokens, rows, columns);
                double worst = 0, scale = 1;
                for (int t = 0; t < tokens; t++) {
                    for (int r = 0; r < rows; r++) {
                        float v = got[t * rows + r];
                        if (r == 5 || r == 9) {
                            assertTrue(Float.isNaN(v), "row " + r + " holds a NaN code, token " + t + " gave " + v);
                            continue;
                        }
                        assertFalse(Float.isNaN(v), "row " + r + ", token " + t + " became NaN");
                        worst = Math.max(worst, Math.abs(v - expected[t * rows + r]));
                        scale = Math.max(scale, Math.abs(expected[t * rows + r]));
                    }
                }
                boolean streamed = tokens <= 8 && !(columns % 64 == 0 && tokens >= Kernels.skinnyMinTokens("fp8"));
                double bound = streamed ? GEMV_TOLERANCE : PREFILL_TOLERANCE;
                assertTrue(worst / scale <= bound, tokens + " tokens: the other rows differ by " + worst / scale);
            }
            try (Tensor out = gpu.allocate(DType.F32, 1, columns)) {
                weight.gatherRows(new int[] {9}, out);
                float[] row = gpu.read(out);
                for (int c = 0; c < columns; c++) {
                    assertEquals(Float.isNaN(loaded.matrix()[9 * columns + c]), Float.isNaN(row[c]),
                            "gathered column " + c);
                }
            }
        }
    }

    /** The fixture's FP8 layers (partial blocks both ways) and a bf16 checkpoint's, through the quantizer. */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"deepseek-v3-tiny-fp8", "deepseek-v3-tiny"})
    void theQuantizerLoadsTheFixturesLayersAsTheCpuQuantizerDoes(String fixture) throws IOException {
        var onGpu = new CudaFp8Quantizer();
        var onCpu = new Fp8Quantizer();
        try (Checkpoint checkpoint = new SafetensorsCheckpointLoader().open(Fixtures.folder(fixture))) {
            for (String prefix : List.of("model.layers.0.mlp.down_proj", "model.layers.0.self_attn.kv_b_proj",
                    "model.layers.1.mlp.experts.3.gate_proj", "model.layers.0.self_attn.q_b_proj")) {
                Weight loaded = onGpu.load(checkpoint, prefix, gpu);
                float[] matrix = gathered(onCpu.load(checkpoint, prefix, cpu));
                try (Fp8Weight weight = (Fp8Weight) loaded) {
                    int rows = weight.rows(), columns = weight.columns();
                    double worst = 0;
                    for (int tokens : new int[] {1, 3, 8, 9, 33}) {
                        float[] x = Data.uniform(random, tokens * columns);
                        double error = relativeError(weight, x, tokens, matrix);
                        double bound = tokens <= 8 ? GEMV_TOLERANCE : PREFILL_TOLERANCE;
                        assertTrue(error <= bound, fixture + " " + prefix + ", " + tokens + " tokens: relative error " + error);
                        worst = Math.max(worst, error);
                    }
                    assertGathersLikeTheCpu(weight, matrix, IntStream.range(0, rows).toArray());
                    System.out.printf("%s %s [%d, %d] through the quantizer: max relative error %.2e, rows identical to "
                            + "the CPU quantizer's%n", fixture, prefix, rows, columns, worst);
                }
            }
            if (fixture.endsWith("-fp8")) {
                try (Weight kept = onGpu.load(checkpoint, "model.layers.3.eh_proj", gpu)) {
                    assertEquals("bf16", kept.format(), "a layer the checkpoint keeps in bf16 stays bf16");
                }
            }
        }
    }

    /**
     * A 7168 × 2048 matrix (a DeepSeek-V3 expert's down projection): its device memory against the same matrix in
     * bf16 (the free memory the driver reports, before and after), and products of 1 and 9 tokens; then 8192 × 4096,
     * whose prefill dequantizes it in two tiles.
     */
    @Test
    void aLargeWeightTakesItsBytesOnTheDeviceAndItsPrefillCrossesTiles() {
        CudaContext context = gpu.context();
        context.quantKernels();
        for (int[] shape : new int[][] {{7168, 2048}, {8192, 4096}}) {
            int rows = shape[0], columns = shape[1];
            CheckpointTensor bf16 = Data.tensor("w", DType.BF16, new float[rows * columns], rows, columns);
            Placed<Weight> dense = place(context, () -> gpu.denseWeight(bf16));
            long denseBytes = dense.deviceBytes();
            dense.weight().close();
            float[][] matrix = new float[1][];
            Placed<Fp8Weight> placed = place(context, () -> {
                Loaded loaded = stored(rows, columns, 128, 128, false);
                matrix[0] = loaded.matrix();
                return loaded.weight();
            });
            try (Fp8Weight weight = placed.weight()) {
                long device = placed.deviceBytes();
                double ratio = (double) device / denseBytes;
                System.out.printf("fp8 %dx%d: %d bytes of codes and scales, %d on the device (bf16: %d), %.3f of bf16%n",
                        rows, columns, weight.bytes(), device, denseBytes, ratio);
                assertTrue(device >= weight.bytes() * 0.9 && device <= weight.bytes() + (8L << 20),
                        "the device lost " + device + " bytes for a weight of " + weight.bytes());
                // Half of bf16's bytes, give or take the driver's 2 MB rounding of the codes' and scales' allocations.
                double bound = 0.5 + (4 << 20) / (double) denseBytes;
                assertTrue(ratio <= bound, "fp8 takes " + ratio + " of bf16's device memory, more than " + bound);
                for (int tokens : new int[] {1, 9}) {
                    float[] x = Data.uniform(random, tokens * columns);
                    double error = relativeError(weight, x, tokens, matrix[0]);
                    System.out.printf("fp8 %dx%d, %d token(s): relative error %.2e%n", rows, columns, tokens, error);
                    assertTrue(error <= (tokens == 1 ? GEMV_TOLERANCE : PREFILL_TOLERANCE),
                            tokens + " tokens: relative error " + error);
                }
            }
        }
    }

    /** A weight and the device memory placing it took. */
    private record Placed<W extends Weight>(W weight, long deviceBytes) {}

    private static <W extends Weight> Placed<W> place(CudaContext context, Supplier<W> make) {
        gpu.synchronize();
        long before = context.memoryInfo()[0];
        W weight = make.get();
        gpu.synchronize();
        return new Placed<>(weight, before - context.memoryInfo()[0]);
    }

    /**
     * Codes as a checkpoint stores them: every finite code once in order (then random finite codes), block scales of
     * realistic sizes (2^-12 .. 2^-5, i.e. blocks whose largest weights lie between 0.1 and 14); with NaN codes at
     * rows 5 and 9 when asked. The matrix is the CPU bundle's weight of the same codes and scales, gathered.
     */
    private Loaded stored(int rows, int columns, int blockRows, int blockColumns, boolean withNan) {
        byte[] codes = new byte[rows * columns];
        for (int i = 0; i < codes.length; i++) {
            int code = i < 256 ? i : random.nextInt(256);
            if ((code & 0x7F) == 0x7F) code &= 0xFE;
            codes[i] = (byte) code;
        }
        if (withNan) {
            codes[5 * columns + 17] = (byte) 0x7F;
            codes[9 * columns + columns - 3] = (byte) 0xFF;
        }
        MemorySegment data = Arena.ofAuto().allocate(codes.length, 16);
        MemorySegment.copy(codes, 0, data, ValueLayout.JAVA_BYTE, 0, codes.length);
        CheckpointTensor tensor = new CheckpointTensor("w.weight", DType.F8_E4M3, new long[] {rows, columns}, data,
                Path.of("generated"));
        float[] scales = new float[Fp8Weight.blocks(rows, blockRows) * Fp8Weight.blocks(columns, blockColumns)];
        for (int i = 0; i < scales.length; i++) {
            scales[i] = (float) Math.pow(2, random.nextInt(-12, -5)) * (0.5f + random.nextFloat());
        }
        Fp8Weight weight = Fp8Blocks.stored(gpu.context(), tensor, scales, blockRows, blockColumns);
        float[] matrix = gathered(new Fp8BlockWeight(data, scales.clone(), rows, columns, blockRows, blockColumns,
                cpu.pool(), scratch, null));
        return new Loaded(weight, matrix);
    }

    /** bf16 values of different magnitudes per row and a row of zeros, quantized on load by both backends. */
    private Loaded quantizedOnLoad(int rows, int columns) {
        float[] values = Data.uniform(random, rows * columns);
        for (int r = 0; r < rows; r++) {
            float magnitude = r == rows / 3 ? 0 : (float) Math.pow(10, random.nextInt(4) - 2);
            for (int c = r * columns; c < (r + 1) * columns; c++) {
                values[c] = Float.intBitsToFloat(Float.floatToRawIntBits(values[c] * magnitude) & 0xffff0000);
            }
        }
        CheckpointTensor tensor = Data.tensor("w.weight", DType.BF16, values, rows, columns);
        Fp8Weight weight = Fp8Blocks.quantize(gpu.context(), tensor);
        float[] matrix = gathered(BlockQuantization.quantize(tensor, 128, 128, cpu.pool(), scratch));
        return new Loaded(weight, matrix);
    }

    /** The CPU weight's matrix, gathered row by row. */
    private static float[] gathered(Weight weight) {
        int rows = weight.rows(), columns = weight.columns();
        CpuTensor out = CpuTensor.allocate(DType.F32, rows, columns);
        weight.gatherRows(IntStream.range(0, rows).toArray(), out);
        float[] values = new float[rows * columns];
        for (int r = 0; r < rows; r++) System.arraycopy(out.array(), out.rowOffset(r), values, r * columns, columns);
        return values;
    }

    /** The device's gathered rows against the matrix, bit for bit, and the row after them untouched. */
    private static void assertGathersLikeTheCpu(Fp8Weight weight, float[] matrix, int[] ids) {
        int columns = weight.columns();
        try (Tensor out = gpu.allocate(DType.F32, ids.length + 1, columns)) {
            gpu.write(poison((ids.length + 1) * columns), out);
            weight.gatherRows(ids, out);
            float[] got = gpu.read(out);
            for (int i = 0; i < ids.length; i++) {
                for (int c = 0; c < columns; c++) {
                    float expected = matrix[ids[i] * columns + c];
                    float actual = got[i * columns + c];
                    if (Float.floatToIntBits(expected) != Float.floatToIntBits(actual)) {
                        throw new AssertionError("gathered row " + ids[i] + ", column " + c + ": " + actual
                                + " where the CPU has " + expected);
                    }
                }
            }
            assertUntouched(got, ids.length * columns, "the row after the gathered ones");
        }
    }

    /** The product on the device, after checking that the row of out past it stayed NaN. */
    private static float[] product(Weight weight, float[] x, int tokens, int rows) {
        float[] got;
        try (Tensor in = gpu.allocate(DType.F32, tokens, weight.columns());
             Tensor out = gpu.allocate(DType.F32, tokens + 1, rows)) {
            gpu.write(x, in);
            gpu.write(poison((tokens + 1) * rows), out);
            weight.multiply(in, out);
            got = gpu.read(out);
        }
        assertUntouched(got, tokens * rows, "the row after the product");
        return got;
    }

    private static double[] float64Product(float[] matrix, float[] x, int tokens, int rows, int columns) {
        double[] expected = new double[tokens * rows];
        IntStream.range(0, rows).parallel().forEach(r -> {
            for (int t = 0; t < tokens; t++) {
                double sum = 0;
                for (int c = 0; c < columns; c++) sum += (double) matrix[r * columns + c] * x[t * columns + c];
                expected[t * rows + r] = sum;
            }
        });
        return expected;
    }

    /** Max |product - float64 reference| over the magnitude of the reference (at least 1). */
    private static double relativeError(Weight weight, float[] x, int tokens, float[] matrix) {
        int rows = weight.rows(), columns = weight.columns();
        float[] got = product(weight, x, tokens, rows);
        double[] expected = float64Product(matrix, x, tokens, rows, columns);
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
}
