package dev.kiln.backend.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import java.lang.foreign.Arena;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Every dense format's matmul and row gather against a double-precision reference. */
class DenseWeightTest {
    private static final CpuBackend BACKEND = new CpuBackend(2);
    private static final CpuBackend SINGLE = new CpuBackend(1);

    @AfterAll
    static void stop() {
        BACKEND.shutdown();
        SINGLE.shutdown();
    }

    static Stream<Arguments> shapes() {
        Stream.Builder<Arguments> cases = Stream.builder();
        int[][] shapes = {{1, 1}, {7, 33}, {33, 100}, {5, 64}, {65, 257}, {130, 1000}, {96, 512}, {3, 31}};
        for (DType dtype : new DType[] {DType.BF16, DType.F16, DType.F32}) {
            for (int[] s : shapes) cases.add(Arguments.of(dtype, s[0], s[1]));
        }
        return cases.build();
    }

    @ParameterizedTest(name = "{0} {1}x{2}")
    @MethodSource("shapes")
    void multiplyMatchesReferenceForEveryTokenCount(DType dtype, int rows, int columns) {
        Random random = new Random(rows * 31L + columns);
        try (Arena arena = Arena.ofShared()) {
            TestWeights.Stored w = TestWeights.random(arena, dtype, random, rows, columns);
            Weight weight = BACKEND.denseWeight(w.tensor());
            assertEquals(rows, weight.rows());
            assertEquals(columns, weight.columns());
            assertEquals((long) rows * columns * dtype.byteSize(), weight.bytes());
            assertEquals(dtype.name().toLowerCase(), weight.format());
            for (int tokens : new int[] {1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 23, 24, 31, 32, 33, 40, 70}) {
                float[] x = TestWeights.activations(random, tokens * columns);
                check(weight, w.values(), rows, columns, x, tokens, BACKEND);
            }
            Weight single = SINGLE.denseWeight(w.tensor());
            for (int tokens : new int[] {1, 6, 20}) {
                check(single, w.values(), rows, columns, TestWeights.activations(random, tokens * columns), tokens, SINGLE);
            }
        }
    }

    @Test
    void largeWeightsUseSeveralColumnBlocksAndRowChunks() {
        Random random = new Random(7);
        try (Arena arena = Arena.ofShared()) {
            for (DType dtype : new DType[] {DType.BF16, DType.F16}) {
                TestWeights.Stored w = TestWeights.random(arena, dtype, random, 200, 700);
                Weight weight = BACKEND.denseWeight(w.tensor());
                for (int tokens : new int[] {1, 9, 48, 100}) {
                    check(weight, w.values(), 200, 700, TestWeights.activations(random, tokens * 700), tokens, BACKEND);
                }
            }
        }
    }

    /**
     * The bf16 kernel for a few activation rows reads weight rows as streams of eight and columns in blocks of at
     * least 768: this shape has several column blocks, a partial permutation block, and row chunks that leave rows
     * over (five, so the last group of four repeats a row); the row counts cover every remainder of the groups of
     * four activation rows, and both sides of the switch to the GEMM.
     */
    @Test
    void bf16BatchedDecodeCoversColumnBlocksRowStreamsAndGroupRemainders() {
        Random random = new Random(13);
        int rows = 301;
        int columns = 1700;
        try (Arena arena = Arena.ofShared()) {
            TestWeights.Stored w = TestWeights.random(arena, DType.BF16, random, rows, columns);
            for (CpuBackend backend : new CpuBackend[] {BACKEND, SINGLE}) {
                Weight weight = backend.denseWeight(w.tensor());
                for (int tokens : new int[] {2, 3, 5, 6, 8, 9, 31, 32, 33, 47, 48}) {
                    float[] x = TestWeights.activations(random, tokens * columns);
                    check(weight, w.values(), rows, columns, x, tokens, backend);
                }
            }
        }
    }

    @Test
    void multiplyUsesOnlyTheRowsOfItsInputAndLeavesTheRestOfTheOutput() {
        Random random = new Random(11);
        try (Arena arena = Arena.ofShared()) {
            TestWeights.Stored w = TestWeights.random(arena, DType.BF16, random, 40, 48);
            Weight weight = BACKEND.denseWeight(w.tensor());
            Tensor x = BACKEND.allocate(DType.F32, 64, 48);
            Tensor out = BACKEND.allocate(DType.F32, 64, 40);
            float[] fill = new float[64 * 40];
            Arrays.fill(fill, 42f);
            BACKEND.write(fill, out);
            float[] xs = TestWeights.activations(random, 3 * 48);
            BACKEND.write(xs, x);
            BACKEND.matmul(x.rows(3), weight, out);
            float[] result = BACKEND.read(out);
            float[] expected = reference(w.values(), 40, 48, xs, 3);
            for (int i = 0; i < 3 * 40; i++) assertEquals(expected[i], result[i], 1e-4, "element " + i);
            for (int i = 3 * 40; i < result.length; i++) assertEquals(42f, result[i]);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("dtypes")
    void gatherRowsAndEmbedCopyExactRows(DType dtype) {
        Random random = new Random(3);
        try (Arena arena = Arena.ofShared()) {
            TestWeights.Stored w = TestWeights.random(arena, dtype, random, 50, 37);
            Weight table = BACKEND.denseWeight(w.tensor());
            int[] ids = {49, 0, 7, 7, 13};
            Tensor out = BACKEND.allocate(DType.F32, 8, 37);
            BACKEND.embed(table, ids, out);
            float[] got = BACKEND.read(out);
            for (int t = 0; t < ids.length; t++) {
                for (int c = 0; c < 37; c++) assertEquals(w.values()[ids[t] * 37 + c], got[t * 37 + c]);
            }
            assertThrows(IndexOutOfBoundsException.class, () -> table.gatherRows(new int[] {50}, out));
        }
    }

    static Stream<DType> dtypes() {
        return Stream.of(DType.BF16, DType.F16, DType.F32);
    }

    @Test
    void rejectsWhatIsNotADenseMatrix() {
        try (Arena arena = Arena.ofShared()) {
            TestWeights.Stored w = TestWeights.random(arena, DType.F32, new Random(1), 12);
            assertThrows(IllegalArgumentException.class, () -> BACKEND.denseWeight(
                    new CheckpointTensor("v", DType.F32, new long[] {12}, w.tensor().data(), Path.of("x"))));
            assertThrows(IllegalArgumentException.class, () -> BACKEND.denseWeight(
                    new CheckpointTensor("i", DType.I32, new long[] {3, 4}, w.tensor().data(), Path.of("x"))));
            assertThrows(IllegalArgumentException.class, () -> BACKEND.denseWeight(
                    new CheckpointTensor("short", DType.F32, new long[] {4, 4}, w.tensor().data(), Path.of("x"))));
            Weight weight = BACKEND.denseWeight(
                    new CheckpointTensor("m", DType.F32, new long[] {3, 4}, w.tensor().data(), Path.of("x")));
            assertThrows(IllegalArgumentException.class,
                    () -> weight.multiply(BACKEND.allocate(DType.F32, 1, 5), BACKEND.allocate(DType.F32, 1, 3)));
            assertThrows(IllegalArgumentException.class,
                    () -> weight.multiply(BACKEND.allocate(DType.F32, 2, 4), BACKEND.allocate(DType.F32, 1, 3)));
        }
    }

    private static void check(Weight weight, float[] w, int rows, int columns, float[] x, int tokens, CpuBackend backend) {
        Tensor in = backend.allocate(DType.F32, tokens, columns);
        Tensor out = backend.allocate(DType.F32, tokens, rows);
        backend.write(x, in);
        backend.matmul(in, weight, out);
        float[] got = backend.read(out);
        float[] expected = reference(w, rows, columns, x, tokens);
        for (int t = 0; t < tokens; t++) {
            for (int r = 0; r < rows; r++) {
                double magnitude = 0;
                for (int c = 0; c < columns; c++) magnitude += Math.abs((double) x[t * columns + c] * w[r * columns + c]);
                // f32 accumulation of `columns` products: error grows with the sum of magnitudes.
                double tolerance = 1e-6 * magnitude + 1e-6;
                assertEquals(expected[t * rows + r], got[t * rows + r], tolerance,
                        weight.format() + " " + rows + "x" + columns + " tokens=" + tokens + " t=" + t + " r=" + r);
            }
        }
    }

    static float[] reference(float[] w, int rows, int columns, float[] x, int tokens) {
        float[] out = new float[tokens * rows];
        for (int t = 0; t < tokens; t++) {
            for (int r = 0; r < rows; r++) {
                double sum = 0;
                for (int c = 0; c < columns; c++) sum += (double) x[t * columns + c] * w[r * columns + c];
                out[t * rows + r] = (float) sum;
            }
        }
        return out;
    }
}
