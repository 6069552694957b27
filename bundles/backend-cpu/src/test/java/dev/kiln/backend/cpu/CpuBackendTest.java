package dev.kiln.backend.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.backend.DeviceInfo;
import dev.kiln.api.backend.RotaryEmbedding;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import java.lang.foreign.Arena;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The backend's row-wise operations and rotary embeddings against double-precision references. */
class CpuBackendTest {
    private static final CpuBackend BACKEND = new CpuBackend(2);
    /** Row counts (1 row, odd, more than a vector, enough to go parallel) × row lengths (not vector multiples). */
    private static final int[][] SHAPES = {{1, 1}, {1, 7}, {7, 33}, {33, 100}, {3, 1536}, {70, 2049}};

    @AfterAll
    static void stop() {
        BACKEND.shutdown();
    }

    @Test
    void describesItself() {
        DeviceInfo info = BACKEND.device();
        assertEquals("cpu", BACKEND.name());
        assertEquals("cpu", info.backend());
        assertEquals(2, info.parallelism());
        assertEquals(2, BACKEND.pool().threads());
        assertTrue(info.description().contains("bit vectors"), info.description());
        try (CpuBackend defaults = new CpuBackend()) {
            assertTrue(defaults.pool().threads() >= 1 && defaults.pool().threads() <= Runtime.getRuntime().availableProcessors());
        }
    }

    @Test
    void writeAndReadCopyValuesAndViewsShareStorage() {
        Tensor t = BACKEND.allocate(DType.F32, 4, 3);
        assertArrayEquals(new long[] {4, 3}, t.shape());
        assertArrayEquals(new float[12], BACKEND.read(t));
        BACKEND.write(new float[] {1, 2, 3, 4, 5}, t);
        assertArrayEquals(new float[] {1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 0, 0}, BACKEND.read(t));
        Tensor two = t.rows(2);
        assertArrayEquals(new float[] {1, 2, 3, 4, 5, 0}, BACKEND.read(two));
        BACKEND.write(new float[] {9, 9, 9, 9, 9, 9}, two);
        assertArrayEquals(new float[] {9, 9, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0}, BACKEND.read(t));
        CpuTensor middle = CpuTensor.of(t).rowRange(1, 3);
        BACKEND.write(new float[] {7, 7, 7, 8, 8, 8}, middle);
        assertArrayEquals(new float[] {9, 9, 9, 7, 7, 7, 8, 8, 8, 0, 0, 0}, BACKEND.read(t));
        assertThrows(IllegalArgumentException.class, () -> t.rows(5));
        assertThrows(IllegalArgumentException.class, () -> BACKEND.write(new float[13], t));
        Tensor ids = BACKEND.allocate(DType.I32, 2, 5);
        assertEquals(DType.I32, ids.dtype());
        assertEquals(40, CpuTensor.of(ids).segment().byteSize());
        assertEquals(20, CpuTensor.of(ids.rows(1)).segment().byteSize());
        assertThrows(IllegalArgumentException.class, () -> BACKEND.read(ids));
    }

    @Test
    void vectorConvertsEveryFloatFormat() {
        Random random = new Random(5);
        try (Arena arena = Arena.ofShared()) {
            for (DType dtype : new DType[] {DType.BF16, DType.F16, DType.F32}) {
                TestWeights.Stored v = TestWeights.random(arena, dtype, random, 45);
                Tensor t = BACKEND.vector(v.tensor());
                assertArrayEquals(new long[] {1, 45}, t.shape());
                assertArrayEquals(v.values(), BACKEND.read(t));
            }
        }
    }

    @Test
    void rmsNormMatchesReference() {
        Random random = new Random(1);
        for (int[] s : SHAPES) {
            int rows = s[0], n = s[1];
            float[] x = TestWeights.activations(random, rows * n);
            float[] scale = TestWeights.activations(random, n);
            float eps = 1e-6f;
            Tensor xt = tensor(x, rows, n);
            Tensor out = BACKEND.allocate(DType.F32, rows, n);
            BACKEND.rmsNorm(xt, tensor(scale, 1, n), eps, out);
            float[] got = BACKEND.read(out);
            for (int r = 0; r < rows; r++) {
                double sum = 0;
                for (int i = 0; i < n; i++) sum += (double) x[r * n + i] * x[r * n + i];
                double inv = 1 / Math.sqrt(sum / n + eps);
                for (int i = 0; i < n; i++) {
                    double expected = x[r * n + i] * inv * scale[i];
                    assertEquals(expected, got[r * n + i], 2e-6 * Math.abs(inv) + 1e-6, "row " + r + " of " + rows + "x" + n);
                }
            }
            BACKEND.rmsNorm(xt, tensor(scale, 1, n), eps, xt);
            assertArrayEquals(got, BACKEND.read(xt), "in place");
        }
    }

    @Test
    void addAndAddBiasMatchReference() {
        Random random = new Random(2);
        for (int[] s : SHAPES) {
            int rows = s[0], n = s[1];
            float[] a = TestWeights.activations(random, rows * n);
            float[] b = TestWeights.activations(random, rows * n);
            float[] bias = TestWeights.activations(random, n);
            Tensor at = tensor(a, rows, n);
            BACKEND.add(at, tensor(b, rows, n));
            float[] sum = BACKEND.read(at);
            for (int i = 0; i < a.length; i++) assertEquals(a[i] + b[i], sum[i]);
            BACKEND.addBias(at, tensor(bias, 1, n));
            float[] biased = BACKEND.read(at);
            for (int i = 0; i < a.length; i++) assertEquals(sum[i] + bias[i % n], biased[i]);
        }
    }

    @Test
    void siluAndMulMatchesReference() {
        Random random = new Random(3);
        for (int[] s : SHAPES) {
            int rows = s[0], n = s[1];
            float[] g = new float[rows * n];
            for (int i = 0; i < g.length; i++) g[i] = (random.nextFloat() - 0.5f) * 40; // saturating both ways
            float[] u = TestWeights.activations(random, rows * n);
            Tensor gt = tensor(g, rows, n);
            Tensor out = BACKEND.allocate(DType.F32, rows, n);
            BACKEND.siluAndMul(gt, tensor(u, rows, n), out);
            float[] got = BACKEND.read(out);
            for (int i = 0; i < g.length; i++) {
                double expected = g[i] / (1 + Math.exp(-(double) g[i])) * u[i];
                assertEquals(expected, got[i], 1e-6 * Math.abs(expected) + 1e-6, "element " + i);
            }
            BACKEND.siluAndMul(gt, tensor(u, rows, n), gt);
            assertArrayEquals(got, BACKEND.read(gt), "in place");
        }
    }

    @ParameterizedTest(name = "{0} rotaryDim={1} headStride={2} offset={3}")
    @CsvSource({
        "HALVES, 64, 64, 0",
        "HALVES, 128, 128, 0",
        "HALVES, 32, 48, 16",
        "HALVES, 6, 10, 3",
        "INTERLEAVED, 64, 192, 128",
        "INTERLEAVED, 64, 64, 0",
        "INTERLEAVED, 10, 14, 4",
    })
    void rotaryEmbeddingMatchesReference(RotaryEmbedding.Layout layout, int rotaryDim, int headStride, int offset) {
        Random random = new Random(rotaryDim * 7L + offset);
        int half = rotaryDim / 2;
        float[] frequencies = new float[half];
        for (int i = 0; i < half; i++) frequencies[i] = (float) Math.pow(10000, -2.0 * i / rotaryDim);
        float magnitude = 1.25f;
        RotaryEmbedding rope = BACKEND.rotaryEmbedding(frequencies, magnitude, layout);
        assertEquals(rotaryDim, rope.rotaryDim());
        int heads = 3;
        // Positions first small, then large ones that make the tables grow.
        for (int[] positions : new int[][] {{0}, {5, 1, 0, 200, 17, 3, 9}, {20000, 4095, 4096, 12, 33000}}) {
            int rows = positions.length;
            float[] x = TestWeights.activations(random, rows * heads * headStride);
            Tensor t = tensor(x, rows, heads * headStride);
            rope.apply(t, positions, heads, headStride, offset);
            float[] got = BACKEND.read(t);
            for (int r = 0; r < rows; r++) {
                for (int h = 0; h < heads; h++) {
                    int base = r * heads * headStride + h * headStride;
                    for (int e = 0; e < headStride; e++) {
                        boolean rotated = e >= offset && e < offset + rotaryDim;
                        if (!rotated) assertEquals(x[base + e], got[base + e], "untouched element " + e);
                    }
                    for (int i = 0; i < half; i++) {
                        int a = layout == RotaryEmbedding.Layout.HALVES ? base + offset + i : base + offset + 2 * i;
                        int b = layout == RotaryEmbedding.Layout.HALVES ? a + half : a + 1;
                        double angle = (double) positions[r] * frequencies[i];
                        double c = Math.cos(angle) * magnitude, s = Math.sin(angle) * magnitude;
                        assertEquals(x[a] * c - x[b] * s, got[a], 1e-5, "pair " + i + " first, position " + positions[r]);
                        assertEquals(x[b] * c + x[a] * s, got[b], 1e-5, "pair " + i + " second, position " + positions[r]);
                    }
                }
            }
        }
    }

    @Test
    void rotaryEmbeddingSpreadsLongBatchesOverThePool() {
        float[] frequencies = new float[64];
        for (int i = 0; i < 64; i++) frequencies[i] = (float) Math.pow(10000, -i / 64.0);
        RotaryEmbedding rope = BACKEND.rotaryEmbedding(frequencies, 1f, RotaryEmbedding.Layout.HALVES);
        RotaryEmbedding single;
        try (CpuBackend one = new CpuBackend(1)) {
            single = one.rotaryEmbedding(frequencies, 1f, RotaryEmbedding.Layout.HALVES);
            int rows = 300, width = 12 * 128;
            float[] x = TestWeights.activations(new Random(9), rows * width);
            int[] positions = new int[rows];
            for (int i = 0; i < rows; i++) positions[i] = i * 3;
            Tensor a = tensor(x, rows, width);
            Tensor b = tensor(x, rows, width);
            rope.apply(a, positions, 12, 128, 0);
            single.apply(b, positions, 12, 128, 0);
            assertArrayEquals(BACKEND.read(b), BACKEND.read(a));
        }
    }

    @Test
    void rotaryEmbeddingRejectsBadGeometry() {
        RotaryEmbedding rope = BACKEND.rotaryEmbedding(new float[] {1, 0.5f}, 1f, RotaryEmbedding.Layout.HALVES);
        Tensor t = BACKEND.allocate(DType.F32, 2, 8);
        assertThrows(IllegalArgumentException.class, () -> rope.apply(t, new int[] {0}, 2, 4, 0));
        assertThrows(IllegalArgumentException.class, () -> rope.apply(t, new int[] {0, 1}, 2, 4, 1));
        assertThrows(IllegalArgumentException.class, () -> rope.apply(t, new int[] {0, 1}, 3, 4, 0));
        assertThrows(IllegalArgumentException.class, () -> rope.apply(t, new int[] {0, -1}, 2, 4, 0));
    }

    @Test
    void rowOperationsCheckShapes() {
        Tensor a = BACKEND.allocate(DType.F32, 2, 8);
        assertThrows(IllegalArgumentException.class, () -> BACKEND.add(a, BACKEND.allocate(DType.F32, 2, 7)));
        assertThrows(IllegalArgumentException.class, () -> BACKEND.add(a, BACKEND.allocate(DType.F32, 1, 8)));
        assertThrows(IllegalArgumentException.class, () -> BACKEND.addBias(a, BACKEND.allocate(DType.F32, 1, 7)));
        assertThrows(IllegalArgumentException.class,
                () -> BACKEND.rmsNorm(a, BACKEND.allocate(DType.F32, 1, 7), 1e-6f, a));
        assertThrows(IllegalArgumentException.class, () -> BACKEND.add(a, BACKEND.allocate(DType.BF16, 2, 8)));
    }

    private static Tensor tensor(float[] values, int rows, int columns) {
        Tensor t = BACKEND.allocate(DType.F32, rows, columns);
        BACKEND.write(values, t);
        return t;
    }
}
