package dev.kiln.quant.int4.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.quant.cpu.Int4GroupWeight;
import dev.kiln.quant.cpu.KernelScratch;
import dev.kiln.quant.testing.KernelChecks;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Quantization on load: in every group (the last one partial) the element of largest magnitude becomes exactly -8
 * steps, every other element the nearest step (clipped only beyond +7.5 steps), zero groups stay zero; the weight's
 * kernels then compute products with exactly those dequantized values.
 */
class GroupQuantizationTest {
    private static final CpuBackend BACKEND = new CpuBackend(2);
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @AfterAll
    static void stop() {
        BACKEND.shutdown();
    }

    /** A bf16 matrix of {@code values}, which are rounded to bf16 in place. */
    static CheckpointTensor bf16(int rows, int columns, float[] values) {
        MemorySegment data = MemorySegment.ofArray(new byte[2 * rows * columns]);
        for (int i = 0; i < values.length; i++) {
            data.setAtIndex(SHORT, i, (short) (Float.floatToRawIntBits(values[i]) >>> 16));
            values[i] = Float.intBitsToFloat(data.getAtIndex(SHORT, i) << 16);
        }
        return new CheckpointTensor("layer.weight", DType.BF16, new long[] {rows, columns}, data, Path.of("test.safetensors"));
    }

    @ParameterizedTest
    @CsvSource({"37, 203, 64", "37, 203, 128", "8, 128, 128", "3, 1000, 64"})
    void everyGroupMapsItsExtremeToMinusEightAndTheRestToTheNearestStep(int rows, int columns, int groupSize) {
        Random random = new Random(rows + columns + groupSize);
        float[] values = new float[rows * columns];
        for (int i = 0; i < values.length; i++) values[i] = (float) (random.nextGaussian() * 0.02);
        for (int c = 0; c < Math.min(columns, groupSize); c++) values[columns + c] = 0f; // row 1's first group is zero
        CheckpointTensor tensor = bf16(rows, columns, values);
        try (Int4GroupWeight weight = GroupQuantization.quantize(tensor, groupSize, BACKEND.pool(), KernelScratch.of(BACKEND.pool()))) {
            assertEquals(groupSize, weight.groupSize());
            double[] dense = new double[rows * columns];
            double[] magnitude = new double[rows * columns];
            for (int r = 0; r < rows; r++) {
                for (int g = 0; g * groupSize < columns; g++) {
                    int from = g * groupSize, to = Math.min(columns, from + groupSize);
                    float extreme = 0;
                    for (int c = from; c < to; c++) if (Math.abs(values[r * columns + c]) > Math.abs(extreme)) extreme = values[r * columns + c];
                    float d = weight.scale(r, g);
                    assertEquals(extreme / -8f, d, "row " + r + " group " + g);
                    assertEquals(8, weight.zero(r, g));
                    for (int c = from; c < to; c++) {
                        double w = values[r * columns + c];
                        int q = weight.code(r, c) - 8;
                        double steps = d == 0 ? 0 : w / d;
                        int expected = d == 0 ? 0 : (int) Math.max(-8, Math.min(7, Math.rint(steps)));
                        assertEquals(expected, q, "[" + r + ", " + c + "]");
                        if (w == extreme && d != 0) assertEquals(-8, q, "the extreme is exactly -8 steps");
                        double error = Math.abs(w - q * (double) d);
                        assertTrue(error <= Math.abs(d) * (steps > 7.5 ? steps - 7 : 0.5) * 1.000001, "[" + r + ", " + c + "]");
                        dense[r * columns + c] = q * (double) d;
                        magnitude[r * columns + c] = (q + 16) * Math.abs((double) d);
                    }
                }
            }
            KernelChecks.assertProducts(weight, dense, magnitude, random);
        }
    }

    @Test
    void nonFiniteValuesAndNonMatricesAreRefused() {
        var scratch = KernelScratch.of(BACKEND.pool());
        float[] values = {1, 2, Float.POSITIVE_INFINITY, 4};
        assertThrows(IllegalArgumentException.class, () -> GroupQuantization.quantize(bf16(1, 4, values), 64, BACKEND.pool(), scratch));
        var codes = new CheckpointTensor("w", DType.U8, new long[] {2, 2}, MemorySegment.ofArray(new byte[4]), Path.of("x"));
        var e = assertThrows(IllegalArgumentException.class, () -> GroupQuantization.quantize(codes, 64, BACKEND.pool(), scratch));
        assertTrue(e.getMessage().contains("U8"), e.getMessage());
    }
}
