package dev.kiln.quant.int8.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.quant.cpu.KernelScratch;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Quantization on load from each floating-point type: every row's scale maps its largest magnitude to 127, every code
 * is the nearest multiple of the scale (so the dequantized weight is within half a scale step of the original), zero
 * rows stay zero, and tensors that cannot be quantized are refused.
 */
class ChannelQuantizationTest {
    private static final CpuBackend BACKEND = new CpuBackend(2);
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @AfterAll
    static void stop() {
        BACKEND.shutdown();
    }

    /** A matrix of the given type holding {@code values} (rounded to the type), and those rounded values. */
    static CheckpointTensor tensor(DType dtype, int rows, int columns, float[] values) {
        MemorySegment data = MemorySegment.ofArray(new byte[rows * columns * dtype.byteSize()]);
        for (int i = 0; i < values.length; i++) {
            switch (dtype) {
                case F32 -> data.setAtIndex(FLOAT, i, values[i]);
                case F16 -> {
                    data.setAtIndex(SHORT, i, Float.floatToFloat16(values[i]));
                    values[i] = Float.float16ToFloat(data.getAtIndex(SHORT, i));
                }
                case BF16 -> {
                    data.setAtIndex(SHORT, i, (short) (Float.floatToRawIntBits(values[i]) >>> 16));
                    values[i] = Float.intBitsToFloat(data.getAtIndex(SHORT, i) << 16);
                }
                default -> throw new IllegalArgumentException(dtype.toString());
            }
        }
        return new CheckpointTensor("layer.weight", dtype, new long[] {rows, columns}, data, Path.of("test.safetensors"));
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"F32", "F16", "BF16"})
    void codesAreTheNearestStepsOfAPerRowScale(DType dtype) {
        int rows = 37, columns = 203;
        Random random = new Random(dtype.ordinal());
        float[] values = new float[rows * columns];
        for (int i = 0; i < values.length; i++) values[i] = (float) (random.nextGaussian() * 0.02 * (1 + i / columns));
        for (int c = 0; c < columns; c++) values[5 * columns + c] = 0f; // an all-zero row
        CheckpointTensor tensor = tensor(dtype, rows, columns, values);
        try (Int8ChannelWeight weight = ChannelQuantization.quantize(tensor, BACKEND.pool(), KernelScratch.of(BACKEND.pool()))) {
            assertEquals(rows, weight.rows());
            assertEquals(columns, weight.columns());
            for (int r = 0; r < rows; r++) {
                float amax = 0;
                for (int c = 0; c < columns; c++) amax = Math.max(amax, Math.abs(values[r * columns + c]));
                float scale = weight.scale(r);
                assertEquals(amax / 127f, scale, "row " + r + ": scale");
                int extreme = 0;
                for (int c = 0; c < columns; c++) {
                    double w = values[r * columns + c];
                    int q = weight.code(r, c);
                    int expected = scale == 0 ? 0 : (int) Math.rint(w / scale);
                    assertEquals(expected, q, "row " + r + ", column " + c);
                    assertTrue(Math.abs(w - q * (double) scale) <= scale * 0.5000001, "within half a step");
                    extreme = Math.max(extreme, Math.abs(q));
                }
                assertEquals(r == 5 ? 0 : 127, extreme, "row " + r + ": the largest magnitude maps to 127");
            }
            // One byte per weight (rows padded to the vector length) plus four per row: about half of bf16.
            assertEquals((long) rows * Int8ChannelWeight.paddedColumns(columns) + 4L * rows, weight.bytes());
        }
    }

    @Test
    void tensorsThatAreNotFloatingPointMatricesAreRefused() {
        var scratch = KernelScratch.of(BACKEND.pool());
        var codes = new CheckpointTensor("w", DType.I8, new long[] {2, 2}, MemorySegment.ofArray(new byte[4]), Path.of("x"));
        var e = assertThrows(IllegalArgumentException.class, () -> ChannelQuantization.quantize(codes, BACKEND.pool(), scratch));
        assertTrue(e.getMessage().contains("I8"), e.getMessage());
        var vector = new CheckpointTensor("w", DType.F32, new long[] {4}, MemorySegment.ofArray(new byte[16]), Path.of("x"));
        assertThrows(IllegalArgumentException.class, () -> ChannelQuantization.quantize(vector, BACKEND.pool(), scratch));
        var truncated = new CheckpointTensor("w", DType.F32, new long[] {2, 2}, MemorySegment.ofArray(new byte[12]), Path.of("x"));
        assertThrows(IllegalArgumentException.class, () -> ChannelQuantization.quantize(truncated, BACKEND.pool(), scratch));
        float[] values = {1, Float.NaN, 2, 3};
        assertThrows(IllegalArgumentException.class,
                () -> ChannelQuantization.quantize(tensor(DType.F32, 2, 2, values), BACKEND.pool(), scratch));
    }
}
