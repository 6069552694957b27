package dev.kiln.quant.int8.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.quant.cpu.KernelScratch;
import dev.kiln.quant.testing.KernelChecks;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Every kernel path (one token, a few, prefill) against a float64 product with {@code q · s}, on shapes whose
 * columns are not a multiple of the vector length or of the prefill tile, odd row counts, and more rows than one
 * prefill work item.
 */
class Int8ChannelWeightTest {
    private static final CpuBackend BACKEND = new CpuBackend(2);

    @AfterAll
    static void stop() {
        BACKEND.shutdown();
    }

    @ParameterizedTest
    @CsvSource({"200, 300", "70, 133", "9, 7", "130, 257", "1, 1000", "97, 64"})
    void everyPathComputesTheDequantizedProduct(int rows, int columns) {
        Random random = new Random(rows * 31L + columns);
        int depth = Int8ChannelWeight.paddedColumns(columns);
        Arena arena = Arena.ofShared();
        MemorySegment codes = arena.allocate((long) rows * depth, 64);
        float[] scales = new float[rows];
        double[] dense = new double[rows * columns];
        double[] magnitude = new double[rows * columns];
        for (int r = 0; r < rows; r++) {
            scales[r] = (float) Math.scalb(0.5 + random.nextDouble(), -random.nextInt(4, 12));
            for (int c = 0; c < columns; c++) {
                int q = random.nextInt(-127, 128);
                codes.set(ValueLayout.JAVA_BYTE, (long) r * depth + c, (byte) q);
                dense[r * columns + c] = q * (double) scales[r];
                magnitude[r * columns + c] = Math.abs(dense[r * columns + c]);
            }
        }
        try (var weight = new Int8ChannelWeight(codes, scales, rows, columns, depth, BACKEND.pool(),
                KernelScratch.of(BACKEND.pool()), arena)) {
            KernelChecks.assertProducts(weight, dense, magnitude, random);
            assertEquals((long) rows * depth + 4L * rows, weight.bytes());
            assertEquals("weight_only_int8", weight.format());
            for (int c = 0; c < columns; c++) assertEquals(dense[c], weight.code(0, c) * (double) weight.scale(0));
        }
    }

    @Test
    void inconsistentGeometryIsRefused() {
        try (Arena arena = Arena.ofConfined()) {
            var pool = BACKEND.pool();
            var scratch = KernelScratch.of(pool);
            int depth = Int8ChannelWeight.paddedColumns(20);
            assertThrows(IllegalArgumentException.class, () -> new Int8ChannelWeight(arena.allocate(4L * depth),
                    new float[3], 4, 20, depth, pool, scratch, null));
            assertThrows(IllegalArgumentException.class, () -> new Int8ChannelWeight(arena.allocate(4L * 20),
                    new float[4], 4, 20, 20, pool, scratch, null));
        }
    }
}
