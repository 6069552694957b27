package dev.kiln.backend.cuda.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.backend.cuda.internal.QuantizedWeight;
import dev.kiln.backend.cuda.testing.Data;
import dev.kiln.quant.cpu.TensorRows;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The device formats quantize exactly as the CPU bundles do: the same codes and bit-identical scales for every row
 * (ties, zeros, a negative extreme, partial groups, several magnitudes), the same refusals, the same widening of
 * bf16/f16/f32 rows; and the codes are packed in the layout the kernels read. Runs without a GPU.
 */
class QuantizationRulesTest {
    private static final Random RANDOM = new Random(23);

    /** Rows of many kinds: normal, wide-ranging magnitudes, exact half steps, a negative extreme, all zeros, one value. */
    private static float[][] rows(int columns) {
        float[] ties = new float[columns];
        ties[0] = 127; // scale 1 exactly (INT8): k + 0.5 sits exactly between two codes
        for (int c = 1; c < columns; c++) ties[c] = (c % 20 - 10) + 0.5f;
        float[] negativeExtreme = Data.uniform(RANDOM, columns);
        negativeExtreme[columns / 2] = -3;
        float[] wide = new float[columns];
        for (int c = 0; c < columns; c++) wide[c] = (float) (RANDOM.nextGaussian() * Math.pow(10, RANDOM.nextInt(7) - 3));
        float[] single = new float[columns];
        single[columns - 1] = 1e-30f;
        float[] normal = new float[columns];
        for (int c = 0; c < columns; c++) normal[c] = (float) RANDOM.nextGaussian() * 0.02f;
        return new float[][] {normal, wide, ties, negativeExtreme, new float[columns], single};
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 16, 77, 100, 1536})
    void int8CodesAndScalesAreTheCpuBundles(int columns) {
        for (float[] row : rows(columns)) {
            byte[] cpu = new byte[columns], cuda = new byte[columns];
            float cpuScale = dev.kiln.quant.int8.internal.ChannelQuantization.quantizeRow(row.clone(), cpu);
            float cudaScale = ChannelQuantization.quantizeRow(row.clone(), cuda);
            assertEquals(Float.floatToRawIntBits(cpuScale), Float.floatToRawIntBits(cudaScale), "scale");
            assertArrayEquals(cpu, cuda, "codes");
        }
        float[] ties = rows(columns)[2];
        if (columns > 20) {
            byte[] codes = new byte[columns];
            ChannelQuantization.quantizeRow(ties, codes);
            assertEquals(2, codes[12], "2.5 rounds to the even 2");
            assertEquals(4, codes[13], "3.5 rounds to the even 4");
            assertEquals(-10, codes[20], "-9.5 rounds to the even -10");
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 16, 77, 100, 160, 336, 1536})
    void int4CodesAndScalesAreTheCpuBundles(int columns) {
        for (int group : new int[] {64, 128}) {
            int groups = (columns + group - 1) / group;
            for (float[] row : rows(columns)) {
                byte[] cpu = new byte[columns], cuda = new byte[columns];
                float[] cpuScales = new float[groups], cudaScales = new float[groups];
                dev.kiln.quant.int4.internal.GroupQuantization.quantizeRow(row.clone(), group, cpu, cpuScales);
                GroupQuantization.quantizeRow(row.clone(), group, cuda, cudaScales);
                for (int g = 0; g < groups; g++) {
                    assertEquals(Float.floatToRawIntBits(cpuScales[g]), Float.floatToRawIntBits(cudaScales[g]), "scale " + g);
                }
                assertArrayEquals(cpu, cuda, "codes, groups of " + group);
            }
        }
    }

    @Test
    void aNonFiniteValueIsRefusedInTheSameWords() {
        float[] row = {1, Float.NaN, 2};
        assertSameMessage(() -> dev.kiln.quant.int8.internal.ChannelQuantization.quantizeRow(row, new byte[3]),
                () -> ChannelQuantization.quantizeRow(row, new byte[3]));
        float[] infinite = {1, 2, Float.NEGATIVE_INFINITY};
        assertSameMessage(() -> {
            dev.kiln.quant.int4.internal.GroupQuantization.quantizeRow(infinite, 64, new byte[3], new float[1]);
            return null;
        }, () -> {
            GroupQuantization.quantizeRow(infinite, 64, new byte[3], new float[1]);
            return null;
        });
    }

    @Test
    void rowsAreReadAndCheckedAsTheCpuBundlesReadThem() {
        for (DType type : new DType[] {DType.BF16, DType.F16, DType.F32}) {
            float[] values = new float[3 * 45];
            for (int i = 0; i < values.length; i++) values[i] = (float) RANDOM.nextGaussian() * 100;
            CheckpointTensor tensor = Data.tensor("w", type, values, 3, 45);
            FloatRows.requireFloatingMatrix(tensor, "weight_only_int8");
            for (int r = 0; r < 3; r++) {
                float[] cpu = new float[45], cuda = new float[45];
                TensorRows.read(tensor, r, cpu);
                FloatRows.read(tensor, r, cuda);
                assertArrayEquals(cpu, cuda, type + " row " + r);
            }
        }
        CheckpointTensor codes = new CheckpointTensor("q", DType.I8, new long[] {2, 2},
                Arena.ofAuto().allocate(4), java.nio.file.Path.of("generated"));
        CheckpointTensor vector = Data.tensor("v", DType.F32, new float[4], 4);
        for (CheckpointTensor wrong : new CheckpointTensor[] {codes, vector}) {
            assertSameMessage(() -> {
                TensorRows.requireFloatingMatrix(wrong, "weight_only_int4");
                return null;
            }, () -> {
                FloatRows.requireFloatingMatrix(wrong, "weight_only_int4");
                return null;
            });
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 16, 31, 32, 77, 160})
    void int4CodesArePackedTwoPerByteLowNibbleFirstWithZeroPadding(int columns) {
        int rowBytes = QuantizedWeight.rowBytes(QuantizedWeight.Format.INT4, columns);
        assertEquals(0, rowBytes % 16, "rows start 16-byte aligned");
        assertEquals((columns + 31) / 32 * 16, rowBytes);
        byte[] codes = new byte[columns];
        for (int c = 0; c < columns; c++) codes[c] = (byte) RANDOM.nextInt(16);
        MemorySegment packed = Arena.ofAuto().allocate(rowBytes + 3L);
        packed.fill((byte) 0x55);
        OnLoadQuantization.packInt4(codes, columns, packed, 3, rowBytes);
        for (int c = 0; c < 2 * rowBytes; c++) {
            int b = packed.get(ValueLayout.JAVA_BYTE, 3 + c / 2) & 0xff;
            int nibble = c % 2 == 0 ? b & 15 : b >>> 4;
            assertEquals(c < columns ? codes[c] : 8, nibble, "column " + c);
        }
        assertEquals(0x55, packed.get(ValueLayout.JAVA_BYTE, 2) & 0xff, "nothing written before the row");
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 16, 17, 77})
    void int8CodesArePackedOnePerByteWithZeroPadding(int columns) {
        int rowBytes = QuantizedWeight.rowBytes(QuantizedWeight.Format.INT8, columns);
        assertEquals((columns + 15) / 16 * 16, rowBytes);
        byte[] codes = new byte[columns];
        for (int c = 0; c < columns; c++) codes[c] = (byte) (RANDOM.nextInt(255) - 127);
        MemorySegment packed = Arena.ofAuto().allocate(rowBytes);
        packed.fill((byte) 0x55);
        OnLoadQuantization.packInt8(codes, columns, packed, 0, rowBytes);
        for (int c = 0; c < rowBytes; c++) {
            assertEquals(c < columns ? codes[c] : 0, packed.get(ValueLayout.JAVA_BYTE, c), "column " + c);
        }
    }

    @Test
    void aPartialLastGroupHasAScaleOfItsOwn() {
        assertEquals(3, QuantizedWeight.scalesPerRow(QuantizedWeight.Format.INT4, 336, 128));
        assertEquals(6, QuantizedWeight.scalesPerRow(QuantizedWeight.Format.INT4, 336, 64));
        assertEquals(1, QuantizedWeight.scalesPerRow(QuantizedWeight.Format.INT8, 336, 0));
    }

    private static void assertSameMessage(Supplier<Object> cpu, Supplier<Object> cuda) {
        String expected = assertThrows(IllegalArgumentException.class, cpu::get).getMessage();
        assertEquals(expected, assertThrows(IllegalArgumentException.class, cuda::get).getMessage());
    }
}
