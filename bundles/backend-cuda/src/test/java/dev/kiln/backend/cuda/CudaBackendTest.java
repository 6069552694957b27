package dev.kiln.backend.cuda;

import static dev.kiln.backend.cuda.testing.Data.maxAbs;
import static dev.kiln.backend.cuda.testing.Data.maxAbsDiff;
import static dev.kiln.backend.cuda.testing.Data.poison;
import static dev.kiln.backend.cuda.testing.Data.uniform;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.RotaryEmbedding;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.backend.cuda.testing.Data;
import dev.kiln.backend.cuda.testing.Gpu;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Every backend operation on the device against the CPU backend on the same random inputs. Outputs are filled
 * with NaN first, so an element a kernel does not write fails the comparison. Runs only where a CUDA device is.
 */
class CudaBackendTest {
    /** Element-wise operations in f32: both backends round the same operations, up to exp and sqrt ulps. */
    private static final double ELEMENTWISE = 2e-6;

    private static CudaBackend gpu;
    private static CpuBackend cpu;
    private final Random random = new Random(42);

    @BeforeAll
    static void start() {
        gpu = Gpu.backend();
        cpu = new CpuBackend(1);
    }

    @AfterAll
    static void stop() {
        if (cpu != null) cpu.shutdown();
    }

    /** The same values as a tensor on each backend. */
    private record Pair(Tensor gpu, Tensor cpu) {
        float[] gpuValues() {
            return CudaBackendTest.gpu.read(gpu);
        }

        float[] cpuValues() {
            return CudaBackendTest.cpu.read(cpu);
        }
    }

    private static Pair pair(float[] values, int rows, int columns) {
        Tensor g = gpu.allocate(DType.F32, rows, columns);
        Tensor c = cpu.allocate(DType.F32, rows, columns);
        gpu.write(values, g);
        cpu.write(values, c);
        return new Pair(g, c);
    }

    private Pair random(int rows, int columns) {
        return pair(uniform(random, rows * columns), rows, columns);
    }

    private static Pair poisoned(int rows, int columns) {
        return pair(poison(rows * columns), rows, columns);
    }

    private static void assertSame(Pair p, double tolerance, String what) {
        float[] g = p.gpuValues();
        float[] c = p.cpuValues();
        double diff = maxAbsDiff(g, c);
        assertTrue(diff <= tolerance * Math.max(1, maxAbs(c)), what + ": CUDA differs from CPU by " + diff);
    }

    /** The device's argmax per row equals the host's (the API default) on ties, -inf rows and vocabulary-sized rows. */
    @Test
    void argmaxRowsMatchesTheHostRuleOnTiesAndInfiniteRows() {
        int rows = 7, n = 151936;
        Random random = new Random(3);
        float[] values = new float[rows * n];
        for (int i = 0; i < values.length; i++) values[i] = (float) random.nextGaussian() * 4;
        // Row 1: the maximum twice (the first one wins); row 2: all -inf; row 3: the maximum in the last column;
        // row 4: ties everywhere; row 5: -inf except one finite value.
        values[n + 77] = 100f;
        values[n + 99_000] = 100f;
        java.util.Arrays.fill(values, 2 * n, 3 * n, Float.NEGATIVE_INFINITY);
        values[4 * n - 1] = 1000f;
        java.util.Arrays.fill(values, 4 * n, 5 * n, 0.5f);
        java.util.Arrays.fill(values, 5 * n, 6 * n, Float.NEGATIVE_INFINITY);
        values[5 * n + 12345] = -3f;
        try (Tensor t = gpu.allocate(DType.F32, rows, n)) {
            gpu.write(values, t);
            int[] onDevice = gpu.argmaxRows(t);
            int[] onHost = hostReading(values).argmaxRows(t);
            assertArrayEquals(onHost, onDevice);
            assertEquals(n + 77 - n, onDevice[1]);
            assertEquals(0, onDevice[2]);
            assertEquals(n - 1, onDevice[3]);
            assertEquals(0, onDevice[4]);
            assertEquals(12345, onDevice[5]);
        }
    }

    /**
     * The device's draws equal the host reference's (the API default, in double precision) for the same uniform
     * numbers: temperature with top-p, top-k, min-p, a near-greedy temperature, k beyond the vocabulary, a row with
     * ties at the top, temperature 0 (argmax), top-p 0 (the largest logit) and min-p above 1 (nothing kept: the
     * argmax); all rows in one call (a few slices per row), then each setting
     * alone (a row cut into many slices, and the launches without top-k or top-p when the row has none), then rows
     * too short to be cut. Draws whose cumulative weight lands within float rounding of a column boundary may
     * differ; allowed: one in a hundred.
     */
    @Test
    void sampleRowsDrawsWhatTheHostReferenceDraws() {
        float[][] settings = {
                {0.6f, 0, 0.95f, 0}, {1.0f, 50, 1f, 0}, {0.7f, 20, 0.9f, 0.05f}, {1.5f, 0, 1f, 0}, {0.05f, 0, 0.95f, 0},
                {1.0f, 1_000_000, 0.5f, 0}, {0.8f, 3, 1f, 0}, {0f, 0, 1f, 0}, {0.7f, 0, 0f, 0}, {1.0f, 0, 1f, 1.5f}};
        Random random = new Random(9);
        int[] counts = new int[2];
        int n = 151936;
        drawAndCompare(settings, n, random, 25, counts);
        for (float[] setting : settings) drawAndCompare(new float[][] {setting}, n, random, 10, counts);
        drawAndCompare(settings, 1000, random, 10, counts);
        System.out.printf("device sampling: %d of %d draws equal to the host reference's%n", counts[0] - counts[1], counts[0]);
        assertTrue(counts[1] * 100 <= counts[0], counts[1] + " of " + counts[0] + " draws differ from the host reference");
    }

    /**
     * Rows of n Gaussian logits, one per setting (a row of setting {0.8, 3, ...} gets five tied leaders), drawn
     * {@code rounds} times on the device and by the host reference; counts[0] += draws, counts[1] += differences.
     */
    private void drawAndCompare(float[][] settings, int n, Random random, int rounds, int[] counts) {
        int rows = settings.length;
        float[] values = new float[rows * n];
        for (int i = 0; i < values.length; i++) values[i] = (float) random.nextGaussian() * 3;
        float[] params = new float[4 * rows];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(settings[r], 0, params, 4 * r, 4);
            if (settings[r][1] == 3) for (int c = 0; c < 5; c++) values[r * n + n / 2 + c] = 30f;
        }
        try (Tensor t = gpu.allocate(DType.F32, rows, n)) {
            gpu.write(values, t);
            ComputeBackend host = hostReading(values);
            for (int round = 0; round < rounds; round++) {
                double[] uniforms = new double[rows];
                for (int r = 0; r < rows; r++) uniforms[r] = Math.min((float) random.nextDouble(), Math.nextDown(1f));
                int[] onDevice = gpu.sampleRows(t, params, uniforms);
                int[] onHost = host.sampleRows(t, params, uniforms);
                for (int r = 0; r < rows; r++) {
                    counts[0]++;
                    if (onDevice[r] != onHost[r]) counts[1]++;
                    assertTrue(onDevice[r] >= 0 && onDevice[r] < n, "row " + r + " drew column " + onDevice[r]);
                    if (settings[r][0] == 0) assertEquals(onHost[r], onDevice[r], "temperature 0 is the argmax");
                    if (settings[r][2] == 0) assertEquals(onHost[r], onDevice[r], "top-p 0 keeps the largest logit");
                    if (settings[r][3] > 1) assertEquals(onHost[r], onDevice[r], "min-p above 1 keeps nothing: the argmax");
                    if (settings[r][1] == 3) {
                        assertTrue(onDevice[r] >= n / 2 && onDevice[r] < n / 2 + 5,
                                "top-3 of five tied leaders keeps the ties: " + onDevice[r]);
                    }
                }
            }
        }
    }

    /** A backend whose read returns the given values and which draws with the API's host defaults. */
    private static ComputeBackend hostReading(float[] values) {
        return new ComputeBackend() {
            @Override public String name() { return "host"; }
            @Override public dev.kiln.api.backend.DeviceInfo device() { return null; }
            @Override public Tensor allocate(DType dtype, long... shape) { throw new UnsupportedOperationException(); }
            @Override public void write(float[] source, Tensor destination) { throw new UnsupportedOperationException(); }
            @Override public float[] read(Tensor source) { return values; }
            @Override public Weight denseWeight(CheckpointTensor tensor) { throw new UnsupportedOperationException(); }
            @Override public Tensor vector(CheckpointTensor tensor) { throw new UnsupportedOperationException(); }
            @Override public void embed(Weight table, int[] ids, Tensor out) { throw new UnsupportedOperationException(); }
            @Override public void addBias(Tensor x, Tensor bias) { throw new UnsupportedOperationException(); }
            @Override public void rmsNorm(Tensor x, Tensor scale, float eps, Tensor out) { throw new UnsupportedOperationException(); }
            @Override public void add(Tensor accumulator, Tensor x) { throw new UnsupportedOperationException(); }
            @Override public void siluAndMul(Tensor gate, Tensor up, Tensor out) { throw new UnsupportedOperationException(); }
            @Override public RotaryEmbedding rotaryEmbedding(float[] f, float m, RotaryEmbedding.Layout l) { throw new UnsupportedOperationException(); }
        };
    }

    @Test
    void writeThenReadReturnsTheValuesAndViewsShareStorage() {
        float[] values = uniform(random, 5 * 7);
        Pair p = pair(values, 5, 7);
        assertArrayEquals(values, p.gpuValues());
        assertEquals(3 * 7, gpu.read(p.gpu.rows(3)).length);
        assertArrayEquals(java.util.Arrays.copyOf(values, 21), gpu.read(p.gpu.rows(3)));
        assertThrows(IllegalArgumentException.class, () -> gpu.write(new float[36], p.gpu));
        assertThrows(IllegalArgumentException.class, () -> gpu.read(p.cpu));
    }

    @Test
    void rmsNormAddBiasAddScaleAndSiluMatchTheCpu() {
        int rows = 9, n = 1000;
        Pair x = random(rows, n);
        Pair scale = random(1, n);
        Pair out = poisoned(rows, n);
        gpu.rmsNorm(x.gpu, scale.gpu, 1e-6f, out.gpu);
        cpu.rmsNorm(x.cpu, scale.cpu, 1e-6f, out.cpu);
        assertSame(out, ELEMENTWISE, "rmsNorm");
        gpu.rmsNorm(x.gpu.rows(4), scale.gpu, 1e-5f, x.gpu.rows(4));
        cpu.rmsNorm(x.cpu.rows(4), scale.cpu, 1e-5f, x.cpu.rows(4));
        assertSame(x, ELEMENTWISE, "rmsNorm in place on a view");

        Pair bias = random(1, n);
        gpu.addBias(x.gpu, bias.gpu);
        cpu.addBias(x.cpu, bias.cpu);
        assertSame(x, ELEMENTWISE, "addBias");

        Pair y = random(rows, n);
        gpu.add(x.gpu.rows(5), y.gpu.rows(5));
        cpu.add(x.cpu.rows(5), y.cpu.rows(5));
        assertSame(x, ELEMENTWISE, "add on five rows");

        gpu.scale(x.gpu, -1.75f);
        cpu.scale(x.cpu, -1.75f);
        assertSame(x, ELEMENTWISE, "scale");

        Pair gate = pair(scaled(uniform(random, rows * n), 8), rows, n);
        Pair silu = poisoned(rows, n);
        gpu.siluAndMul(gate.gpu, y.gpu, silu.gpu);
        cpu.siluAndMul(gate.cpu, y.cpu, silu.cpu);
        assertSame(silu, ELEMENTWISE, "siluAndMul");
        gpu.siluAndMul(gate.gpu, y.gpu, gate.gpu);
        cpu.siluAndMul(gate.cpu, y.cpu, gate.cpu);
        assertSame(gate, ELEMENTWISE, "siluAndMul into its gate");
    }

    @Test
    void copyColumnsGatherRowsAndScatterAddRowsMatchTheCpu() {
        Pair src = random(6, 50);
        Pair dst = random(8, 70);
        gpu.copyColumns(src.gpu, 10, dst.gpu, 33, 25);
        cpu.copyColumns(src.cpu, 10, dst.cpu, 33, 25);
        assertSame(dst, 0, "copyColumns");
        assertThrows(IllegalArgumentException.class, () -> gpu.copyColumns(src.gpu, 30, dst.gpu, 0, 25));

        int[] rows = {5, 0, 5, 2};
        Pair gathered = poisoned(4, 50);
        gpu.gatherRows(src.gpu, rows, gathered.gpu);
        cpu.gatherRows(src.cpu, rows, gathered.cpu);
        assertSame(gathered, 0, "gatherRows");

        float[] scales = {0.5f, -2f, 1.25f, 3f};
        Pair target = random(6, 50);
        gpu.scatterAddRows(gathered.gpu, new int[] {1, 3, 1, 0}, scales, target.gpu);
        cpu.scatterAddRows(gathered.cpu, new int[] {1, 3, 1, 0}, scales, target.cpu);
        assertSame(target, ELEMENTWISE, "scatterAddRows with a repeated row");
        assertThrows(IllegalArgumentException.class, () -> gpu.gatherRows(src.gpu, new int[] {6}, gathered.gpu));
    }

    @Test
    void copyColumnsOfEveryHeadAtOnceMatchesTheCpu() {
        Pair src = random(6, 50);
        Pair dst = random(8, 70);
        gpu.copyColumns(src.gpu, 2, 12, dst.gpu, 5, 20, 8, 3);
        cpu.copyColumns(src.cpu, 2, 12, dst.cpu, 5, 20, 8, 3);
        assertSame(dst, 0, "copyColumns of three ranges");
        assertThrows(IllegalArgumentException.class, () -> gpu.copyColumns(src.gpu, 2, 21, dst.gpu, 5, 20, 8, 3));
        assertThrows(IllegalArgumentException.class, () -> gpu.copyColumns(src.gpu, 2, 12, dst.gpu, 5, 4, 8, 3));
    }

    /**
     * MLA's per-head products (one launch) against the CPU backend's head-by-head default, for one token,
     * a few, and more than one pass of the kernel holds (8); f32 heads (those derived from FP8 blocks) in one launch too.
     */
    @ParameterizedTest
    @ValueSource(ints = {1, 5, 19})
    void matmulPerHeadMatchesTheCpuHeadByHead(int tokens) {
        int heads = 4, rows = 24, columns = 40, inStride = 48, outStride = 30;
        for (DType type : new DType[] {DType.BF16, DType.F32}) {
            Weight[] g = new Weight[heads], c = new Weight[heads];
            for (int h = 0; h < heads; h++) {
                CheckpointTensor t = Data.tensor("head" + h, type, Data.representable(random, rows * columns, type), rows, columns);
                g[h] = gpu.denseWeight(t);
                c[h] = cpu.denseWeight(t);
            }
            Pair x = random(tokens, 8 + heads * inStride);
            Pair out = random(tokens, 6 + heads * outStride);
            Pair inScratch = poisoned(tokens, columns), outScratch = poisoned(tokens, rows);
            gpu.matmulPerHead(x.gpu, 8, inStride, g, out.gpu, 6, outStride, inScratch.gpu, outScratch.gpu);
            cpu.matmulPerHead(x.cpu, 8, inStride, c, out.cpu, 6, outStride, inScratch.cpu, outScratch.cpu);
            assertSame(out, 1e-5, type + " per-head products of " + tokens + " tokens");
            for (int h = 0; h < heads; h++) {
                g[h].close();
                c[h].close();
            }
        }
    }

    @ParameterizedTest
    @EnumSource(RotaryEmbedding.Layout.class)
    void rotaryEmbeddingMatchesTheCpuForEveryLayoutWithAnOffsetAndLongPositions(RotaryEmbedding.Layout layout) {
        int heads = 3, headStride = 40, offset = 8, half = 12;
        float[] frequencies = new float[half];
        for (int i = 0; i < half; i++) frequencies[i] = (float) Math.pow(10000, -2.0 * i / (2 * half));
        RotaryEmbedding g = gpu.rotaryEmbedding(frequencies, 1.3f, layout);
        RotaryEmbedding c = cpu.rotaryEmbedding(frequencies, 1.3f, layout);
        assertEquals(2 * half, g.rotaryDim());
        Pair x = random(5, heads * headStride + 4);
        int[] positions = {0, 1, 700, 33, 4095};
        g.apply(x.gpu, positions, heads, headStride, offset);
        c.apply(x.cpu, positions, heads, headStride, offset);
        assertSame(x, ELEMENTWISE, layout + " rotary");
        assertThrows(IllegalArgumentException.class, () -> g.apply(x.gpu, new int[] {0, 1, 2, 3, -1}, heads, headStride, offset));
        assertThrows(IllegalArgumentException.class, () -> g.apply(x.gpu, positions, heads, headStride, headStride - 2));
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 5, 8, 9, 16, 17, 32, 33, 37})
    void bf16MatmulMatchesTheCpuForDecodeAndPrefillSizes(int tokens) {
        // 256: whole 64-column chunks, the tensor-core few-token products from 5 to 16 tokens (the defaults); 100: not
        // a multiple of 8, the GEMV's scalar path and cuBLAS.
        for (int columns : new int[] {256, 100}) {
            int rows = 300;
            float[] w = Data.representable(random, rows * columns, DType.BF16);
            assertMatmul(Data.tensor("w", DType.BF16, w, rows, columns), tokens, "bf16");
        }
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"F32", "F16"})
    void f32AndF16WeightsMultiplyInF32(DType type) {
        for (int tokens : new int[] {2, 20}) {
            float[] w = Data.representable(random, 130 * 64, type);
            assertMatmul(Data.tensor("w", type, w, 130, 64), tokens, type.toString());
        }
    }

    private void assertMatmul(CheckpointTensor tensor, int tokens, String what) {
        try (Weight gw = gpu.denseWeight(tensor); Weight cw = cpu.denseWeight(tensor)) {
            assertEquals(tensor.rows(), gw.rows());
            assertEquals(tensor.columns(), gw.columns());
            Pair x = random(tokens, tensor.columns());
            Pair out = poisoned(tokens + 2, tensor.rows());
            gpu.matmul(x.gpu, gw, out.gpu.rows(tokens));
            cpu.matmul(x.cpu, cw, out.cpu.rows(tokens));
            float[] g = gpu.read(out.gpu.rows(tokens));
            float[] c = cpu.read(out.cpu.rows(tokens));
            // Sums of |w·x| reach about the column count; f32 accumulation in either order and the bf16 split
            // (16 significant bits per activation) stay far inside 2e-6 of it.
            double diff = maxAbsDiff(g, c);
            assertTrue(diff < 2e-6 * tensor.columns(), what + " x " + tokens + " tokens: differs by " + diff);
            float[] untouched = gpu.read(out.gpu);
            assertTrue(Float.isNaN(untouched[untouched.length - 1]), "rows beyond the product must stay untouched");
        }
    }

    @Test
    void embeddingAndVectorsReadBf16AndF32Exactly() {
        float[] table = Data.representable(random, 50 * 24, DType.BF16);
        for (DType type : new DType[] {DType.BF16, DType.F32}) {
            CheckpointTensor t = Data.tensor("embed", type, table, 50, 24);
            try (Weight gw = gpu.denseWeight(t)) {
                Pair out = poisoned(4, 24);
                int[] ids = {49, 0, 7, 7};
                gpu.embed(gw, ids, out.gpu);
                float[] g = out.gpuValues();
                for (int i = 0; i < ids.length; i++) {
                    assertArrayEquals(java.util.Arrays.copyOfRange(table, ids[i] * 24, ids[i] * 24 + 24),
                            java.util.Arrays.copyOfRange(g, i * 24, i * 24 + 24), type + " row " + ids[i]);
                }
                assertThrows(IllegalArgumentException.class, () -> gpu.embed(gw, new int[] {50}, out.gpu));
            }
        }
        float[] v = Data.representable(random, 33, DType.BF16);
        try (Tensor gv = gpu.vector(Data.tensor("norm", DType.BF16, v, 33))) {
            assertArrayEquals(new long[] {1, 33}, gv.shape());
            assertArrayEquals(v, gpu.read(gv));
        }
    }

    @Test
    void theDeviceDescribesItself() {
        var info = gpu.device();
        assertEquals("cuda", info.backend());
        assertTrue(info.parallelism() > 0 && info.memoryBytes() > 0, info.toString());
        System.out.println("CUDA device: " + info.description());
        ComputeBackend asApi = gpu;
        assertEquals("cuda", asApi.name());
    }

    private static float[] scaled(float[] v, float factor) {
        for (int i = 0; i < v.length; i++) v[i] *= factor;
        return v;
    }
}
