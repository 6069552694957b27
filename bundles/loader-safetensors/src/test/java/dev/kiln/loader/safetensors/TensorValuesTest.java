package dev.kiln.loader.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.tensor.DType;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** Decoding and encoding of element types, checked exhaustively against the format definitions. */
class TensorValuesTest {
    private static final Path FILE = Path.of("values.safetensors");

    @Test
    void everyBf16CodeDecodesAndReencodes() {
        for (int code = 0; code < 1 << 16; code++) {
            float value = TensorValues.bf16ToFloat((short) code);
            float expected = Float.intBitsToFloat(code << 16);
            assertEquals(Float.floatToRawIntBits(expected), Float.floatToRawIntBits(value), "code " + code);
            if (!Float.isNaN(value)) assertEquals((short) code, TensorValues.floatToBf16(value), "code " + code);
        }
    }

    @Test
    void floatToBf16RoundsToNearestEven() {
        Random random = new Random(7);
        for (int n = 0; n < 200_000; n++) {
            float x = Float.intBitsToFloat(random.nextInt());
            if (Float.isNaN(x)) {
                assertTrue(Float.isNaN(TensorValues.bf16ToFloat(TensorValues.floatToBf16(x))));
                continue;
            }
            // Round to nearest even on the bits: the dropped half decides, and a tie keeps an even upper half.
            // Stepping the upper half past the largest finite value gives infinity, as IEEE overflow does.
            int bits = Float.floatToRawIntBits(x);
            int below = bits >>> 16;
            int dropped = bits & 0xFFFF;
            int expected = dropped < 0x8000 ? below : dropped > 0x8000 ? below + 1 : below + (below & 1);
            assertEquals((short) expected, TensorValues.floatToBf16(x), () -> "rounding " + x);
        }
        assertEquals((short) 0x3F80, TensorValues.floatToBf16(Float.intBitsToFloat(0x3F808000)), "tie to even below");
        assertEquals((short) 0x3F82, TensorValues.floatToBf16(Float.intBitsToFloat(0x3F818000)), "tie to even above");
        assertEquals((short) 0x7F80, TensorValues.floatToBf16(Float.MAX_VALUE), "overflow rounds to infinity");
    }

    @Test
    void everyFp8CodeMatchesTheFormatDefinition() {
        for (int code = 0; code < 256; code++) {
            assertSameFloat(HandDecoding.e4m3(code), TensorValues.f8e4m3ToFloat((byte) code), "E4M3 code " + code);
            assertSameFloat(HandDecoding.e5m2(code), TensorValues.f8e5m2ToFloat((byte) code), "E5M2 code " + code);
            float e4m3 = TensorValues.f8e4m3ToFloat((byte) code);
            if (!Float.isNaN(e4m3)) assertEquals((byte) code, TensorValues.floatToF8e4m3(e4m3), "E4M3 code " + code);
            float e5m2 = TensorValues.f8e5m2ToFloat((byte) code);
            if (!Float.isNaN(e5m2)) assertEquals((byte) code, TensorValues.floatToF8e5m2(e5m2), "E5M2 code " + code);
        }
        assertEquals(448f, TensorValues.f8e4m3ToFloat((byte) 0x7E));
        assertEquals(57344f, TensorValues.f8e5m2ToFloat((byte) 0x7B));
    }

    @Test
    void floatToFp8RoundsToNearestEvenAndSaturates() {
        Random random = new Random(11);
        for (int n = 0; n < 100_000; n++) {
            float x = (float) (random.nextGaussian() * Math.pow(2, random.nextInt(30) - 15));
            if (Math.abs(x) >= 448) continue;
            int code = TensorValues.floatToF8e4m3(x) & 0xFF;
            int sign = x < 0 || (x == 0 && 1 / x < 0) ? 0x80 : 0;
            int below = 0;
            while (below < 0x7E && HandDecoding.e4m3(below + 1) <= Math.abs(x)) below++;
            float magnitude = Math.abs(x);
            float low = HandDecoding.e4m3(below);
            if (low == magnitude) {
                assertEquals(sign | below, code, "exact " + x);
                continue;
            }
            float high = HandDecoding.e4m3(below + 1);
            assertNearestEven(magnitude, low, below, high, below + 1, Math.abs(TensorValues.f8e4m3ToFloat((byte) code)), code & 0x7F);
            assertEquals(sign, code & 0x80, "sign of " + x);
        }
        assertEquals((byte) 0x7E, TensorValues.floatToF8e4m3(1e6f));
        assertEquals((byte) 0xFE, TensorValues.floatToF8e4m3(Float.NEGATIVE_INFINITY));
        assertTrue(Float.isNaN(TensorValues.f8e4m3ToFloat(TensorValues.floatToF8e4m3(Float.NaN))));
        assertEquals((byte) 0x7B, TensorValues.floatToF8e5m2(1e6f));
        assertEquals((byte) 0xFC, TensorValues.floatToF8e5m2(Float.NEGATIVE_INFINITY));
        // Halfway between E4M3 1.0 (code 0x38) and 1.125 (0x39): the even code wins.
        assertEquals((byte) 0x38, TensorValues.floatToF8e4m3(1.0625f));
        assertEquals((byte) 0x3A, TensorValues.floatToF8e4m3(1.1875f));
    }

    @Test
    void tensorsOfEveryTypeDecode() {
        ByteBuffer f16 = le(6).putShort((short) 0x3C00).putShort((short) 0xC000).putShort((short) 0x0001);
        assertArrayEquals(new float[] {1f, -2f, HandDecoding.half(1)}, TensorValues.toFloats(tensor(DType.F16, f16, 3)));
        ByteBuffer f64 = le(16).putDouble(0.1).putDouble(-1e300);
        assertArrayEquals(new float[] {0.1f, Float.NEGATIVE_INFINITY}, TensorValues.toFloats(tensor(DType.F64, f64, 2)));
        ByteBuffer i16 = le(4).putShort((short) -300).putShort((short) 300);
        assertArrayEquals(new long[] {-300, 300}, TensorValues.toLongs(tensor(DType.I16, i16, 2)));
        ByteBuffer i8 = le(2).put((byte) -1).put((byte) 5);
        assertArrayEquals(new long[] {-1, 5}, TensorValues.toLongs(tensor(DType.I8, i8, 2)));
        ByteBuffer u8 = le(2).put((byte) -1).put((byte) 5);
        assertArrayEquals(new int[] {255, 5}, TensorValues.toInts(tensor(DType.U8, u8, 2)));
        ByteBuffer i32 = le(8).putInt(Integer.MIN_VALUE).putInt(3);
        assertArrayEquals(new int[] {Integer.MIN_VALUE, 3}, TensorValues.toInts(tensor(DType.I32, i32, 2)));
    }

    @Test
    void wrongKindsAndRangesAreRefusedNamingTheTensor() {
        CheckpointTensor ids = tensor(DType.I64, le(16).putLong(1L << 40).putLong(1), 2);
        InvalidCheckpointException wide = assertThrows(InvalidCheckpointException.class, () -> TensorValues.toInts(ids));
        assertEquals("t", wide.field());
        assertEquals(FILE, wide.file());
        assertThrows(InvalidCheckpointException.class, () -> TensorValues.toFloats(ids));
        CheckpointTensor reals = tensor(DType.F32, le(4).putFloat(1), 1);
        assertThrows(InvalidCheckpointException.class, () -> TensorValues.toLongs(reals));
        CheckpointTensor notBoolean = tensor(DType.BOOL, le(2).put((byte) 1).put((byte) 2), 2);
        assertThrows(InvalidCheckpointException.class, () -> TensorValues.toLongs(notBoolean));
        CheckpointTensor short1 = new CheckpointTensor("t", DType.F32, new long[] {2}, MemorySegment.ofArray(new byte[7]), FILE);
        assertThrows(InvalidCheckpointException.class, () -> TensorValues.toFloats(short1));
    }

    private static void assertNearestEven(float x, float low, int lowCode, float high, int highCode, float actual, int actualCode) {
        double toLow = Math.abs((double) x - low);
        double toHigh = Math.abs((double) high - x);
        int expectedCode = toLow < toHigh ? lowCode : toHigh < toLow ? highCode : (lowCode % 2 == 0 ? lowCode : highCode);
        assertEquals(expectedCode, actualCode, () -> x + " between " + low + " and " + high + " became " + actual);
    }

    private static void assertSameFloat(float expected, float actual, String message) {
        assertEquals(Float.floatToIntBits(expected), Float.floatToIntBits(actual), message);
    }

    private static ByteBuffer le(int bytes) {
        return ByteBuffer.allocate(bytes).order(ByteOrder.LITTLE_ENDIAN);
    }

    private static CheckpointTensor tensor(DType dtype, ByteBuffer data, long count) {
        return new CheckpointTensor("t", dtype, new long[] {count}, MemorySegment.ofArray(data.array()), FILE);
    }
}
