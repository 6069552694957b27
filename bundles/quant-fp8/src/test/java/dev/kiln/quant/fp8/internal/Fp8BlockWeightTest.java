package dev.kiln.quant.fp8.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.tensor.DType;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.backend.cpu.CpuTensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Both kernels (streaming for few tokens, blocked for many) against a double-precision product with the
 * dequantized matrix, on shapes with partial edge blocks, block widths that are not a multiple of the vector
 * length, and token counts on both sides of the kernel switch.
 */
class Fp8BlockWeightTest {
    private static final CpuBackend BACKEND = new CpuBackend(2);

    @AfterAll
    static void stop() {
        BACKEND.shutdown();
    }

    @ParameterizedTest
    @CsvSource({
        // rows, columns, blockRows, blockColumns
        "200, 300, 128, 128",
        "80, 320, 128, 128",
        "70, 133, 128, 128",
        "130, 257, 64, 40",
        "33, 200, 16, 192",
        "21, 300, 8, 100",
        "9, 7, 4, 3"
    })
    void bothKernelsComputeTheDequantizedProduct(int rows, int columns, int blockRows, int blockColumns) {
        Random random = new Random(rows * 31L + columns);
        try (Arena arena = Arena.ofShared()) {
            MemorySegment codes = arena.allocate((long) rows * columns);
            for (long i = 0; i < codes.byteSize(); i++) {
                int code = random.nextInt(256);
                if ((code & 0x7F) == 0x7F) code = 0; // no NaN in weights
                codes.set(ValueLayout.JAVA_BYTE, i, (byte) code);
            }
            int rowBlocks = (rows + blockRows - 1) / blockRows;
            int columnBlocks = (columns + blockColumns - 1) / blockColumns;
            float[] scales = new float[rowBlocks * columnBlocks];
            for (int i = 0; i < scales.length; i++) scales[i] = (float) Math.scalb(0.5 + random.nextDouble(), -random.nextInt(4, 12));
            var weight = new Fp8BlockWeight(codes, scales, rows, columns, blockRows, blockColumns, BACKEND.pool(),
                    new KernelScratch(BACKEND.pool().threads()), null);
            double[] dense = new double[rows * columns];
            for (int r = 0; r < rows; r++) {
                for (int c = 0; c < columns; c++) {
                    dense[r * columns + c] = (double) E4m3.toFloat(codes.get(ValueLayout.JAVA_BYTE, (long) r * columns + c))
                            * scales[(r / blockRows) * columnBlocks + c / blockColumns];
                }
            }
            for (int tokens : new int[] {1, 3, 5, 15, 16, 37, 70}) {
                float[] x = new float[tokens * columns];
                for (int i = 0; i < x.length; i++) x[i] = (float) random.nextGaussian();
                CpuTensor in = CpuTensor.wrap(x, 0, tokens, columns);
                // A larger output than needed: only the first `tokens` rows may be written.
                CpuTensor out = CpuTensor.allocate(DType.F32, tokens + 2, rows);
                java.util.Arrays.fill(out.array(), 12345f);
                weight.multiply(in, out);
                for (int t = 0; t < tokens; t++) {
                    for (int r = 0; r < rows; r++) {
                        double expected = 0, magnitude = 0;
                        for (int c = 0; c < columns; c++) {
                            double term = x[t * columns + c] * dense[r * columns + c];
                            expected += term;
                            magnitude += Math.abs(term);
                        }
                        float actual = out.array()[t * rows + r];
                        assertEquals(expected, actual, 1e-5 * magnitude + 1e-30,
                                tokens + " tokens: out[" + t + ", " + r + "]");
                    }
                }
                for (int i = tokens * rows; i < out.array().length; i++) assertEquals(12345f, out.array()[i]);
            }

            int[] ids = {rows - 1, 0, rows / 2};
            CpuTensor gathered = CpuTensor.allocate(DType.F32, ids.length, columns);
            weight.gatherRows(ids, gathered);
            for (int i = 0; i < ids.length; i++) {
                for (int c = 0; c < columns; c++) {
                    assertEquals((float) dense[ids[i] * columns + c], gathered.array()[i * columns + c]);
                }
            }
            assertEquals((long) rows * columns + 4L * scales.length, weight.bytes());
            assertThrows(IllegalArgumentException.class,
                    () -> weight.multiply(CpuTensor.allocate(DType.F32, 1, columns + 1), CpuTensor.allocate(DType.F32, 1, rows)));
            assertThrows(IndexOutOfBoundsException.class, () -> weight.gatherRows(new int[] {rows}, gathered));
        }
    }

    @ParameterizedTest
    @CsvSource({"100, 100, 3", "64, 64, 1"})
    void inconsistentGeometryIsRefused(int rows, int columns, int scales) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment codes = arena.allocate((long) rows * columns);
            var e = assertThrows(IllegalArgumentException.class, () -> new Fp8BlockWeight(codes, new float[scales],
                    rows, columns, 32, 32, BACKEND.pool(), new KernelScratch(2), null));
            assertTrue(e.getMessage().contains("scales"), e.getMessage());
        }
    }
}
