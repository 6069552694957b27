package dev.kiln.loader.safetensors;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Decodes a tensor's stored elements into Java arrays, and converts single values between {@code float} and the
 * narrow real formats of checkpoints. Meant for tests, tools and one-off conversions: a copy of the whole tensor is
 * made, so kernels should read {@link CheckpointTensor#data()} in place instead.
 *
 * <p>FP8 follows the formats PyTorch and the DeepSeek checkpoints use: {@code F8_E4M3} is E4M3FN (bias 7, no
 * infinities, {@code S.1111.111} is NaN, largest finite 448) and {@code F8_E5M2} is the upper byte of an IEEE
 * half (bias 15, with infinities).
 */
public final class TensorValues {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Java arrays cannot reach Integer.MAX_VALUE elements on every VM. */
    private static final long MAX_ARRAY = Integer.MAX_VALUE - 8;

    private static final float[] E4M3 = new float[256];
    private static final float[] E5M2 = new float[256];

    static {
        for (int code = 0; code < 256; code++) {
            E4M3[code] = decodeE4M3(code);
            E5M2[code] = Float.float16ToFloat((short) (code << 8));
        }
    }

    private TensorValues() {}

    /**
     * The elements of a real-valued tensor ({@code F64}, {@code F32}, {@code F16}, {@code BF16}, {@code F8_E4M3},
     * {@code F8_E5M2}) as floats; {@code F64} is rounded to the nearest float.
     *
     * @throws InvalidCheckpointException naming the tensor when it holds integers or is too large for an array
     */
    public static float[] toFloats(CheckpointTensor tensor) {
        int n = elementCount(tensor);
        MemorySegment data = tensor.data();
        float[] out = new float[n];
        switch (tensor.dtype()) {
            case F32 -> MemorySegment.copy(data, F32, 0, out, 0, n);
            case F64 -> {
                for (int i = 0; i < n; i++) out[i] = (float) data.getAtIndex(F64, i);
            }
            case F16 -> {
                short[] bits = shorts(data, n);
                for (int i = 0; i < n; i++) out[i] = Float.float16ToFloat(bits[i]);
            }
            case BF16 -> {
                short[] bits = shorts(data, n);
                for (int i = 0; i < n; i++) out[i] = bf16ToFloat(bits[i]);
            }
            case F8_E4M3 -> {
                for (int i = 0; i < n; i++) out[i] = E4M3[data.get(ValueLayout.JAVA_BYTE, i) & 0xFF];
            }
            case F8_E5M2 -> {
                for (int i = 0; i < n; i++) out[i] = E5M2[data.get(ValueLayout.JAVA_BYTE, i) & 0xFF];
            }
            case I64, I32, I16, I8, U8, BOOL -> throw new InvalidCheckpointException(tensor.file(), tensor.name(),
                    "holds " + tensor.dtype() + ", not real numbers");
        }
        return out;
    }

    /**
     * The elements of an integer or boolean tensor ({@code I64}, {@code I32}, {@code I16}, {@code I8}, {@code U8},
     * {@code BOOL}) as longs; {@code U8} is unsigned, {@code BOOL} gives 0 or 1.
     *
     * @throws InvalidCheckpointException naming the tensor when it holds real numbers, or a BOOL byte other than
     *                                    0 or 1, or is too large for an array
     */
    public static long[] toLongs(CheckpointTensor tensor) {
        int n = elementCount(tensor);
        MemorySegment data = tensor.data();
        long[] out = new long[n];
        switch (tensor.dtype()) {
            case I64 -> MemorySegment.copy(data, I64, 0, out, 0, n);
            case I32 -> {
                for (int i = 0; i < n; i++) out[i] = data.getAtIndex(I32, i);
            }
            case I16 -> {
                for (int i = 0; i < n; i++) out[i] = data.getAtIndex(I16, i);
            }
            case I8 -> {
                for (int i = 0; i < n; i++) out[i] = data.get(ValueLayout.JAVA_BYTE, i);
            }
            case U8 -> {
                for (int i = 0; i < n; i++) out[i] = data.get(ValueLayout.JAVA_BYTE, i) & 0xFF;
            }
            case BOOL -> {
                for (int i = 0; i < n; i++) {
                    byte b = data.get(ValueLayout.JAVA_BYTE, i);
                    if (b != 0 && b != 1) {
                        throw new InvalidCheckpointException(tensor.file(), tensor.name(),
                                "element " + i + " is the byte " + b + ", not a boolean 0 or 1");
                    }
                    out[i] = b;
                }
            }
            case F64, F32, F16, BF16, F8_E4M3, F8_E5M2 -> throw new InvalidCheckpointException(tensor.file(),
                    tensor.name(), "holds " + tensor.dtype() + ", not integers");
        }
        return out;
    }

    /**
     * The elements of an integer or boolean tensor as ints, as {@link #toLongs} reads them.
     *
     * @throws InvalidCheckpointException naming the tensor as {@link #toLongs} does, or when an element is beyond
     *                                    the range of an int
     */
    public static int[] toInts(CheckpointTensor tensor) {
        long[] wide = toLongs(tensor);
        int[] out = new int[wide.length];
        for (int i = 0; i < wide.length; i++) {
            if (wide[i] != (int) wide[i]) {
                throw new InvalidCheckpointException(tensor.file(), tensor.name(),
                        "element " + i + " is " + wide[i] + ", beyond the range of an int");
            }
            out[i] = (int) wide[i];
        }
        return out;
    }

    /** A bfloat16 (the upper half of a float's bits) as a float; exact. */
    public static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat((bits & 0xFFFF) << 16);
    }

    /** The bfloat16 nearest a float, ties to even (as PyTorch rounds); NaN stays a quiet NaN. */
    public static short floatToBf16(float value) {
        int bits = Float.floatToRawIntBits(value);
        if (Float.isNaN(value)) return (short) ((bits >>> 16) | 0x0040);
        int roundingBias = 0x7FFF + ((bits >>> 16) & 1);
        return (short) ((bits + roundingBias) >>> 16);
    }

    /** An F8_E4M3 (E4M3FN) byte as a float; exact. */
    public static float f8e4m3ToFloat(byte code) {
        return E4M3[code & 0xFF];
    }

    /** An F8_E5M2 byte as a float; exact. */
    public static float f8e5m2ToFloat(byte code) {
        return E5M2[code & 0xFF];
    }

    /**
     * The F8_E4M3 (E4M3FN) value nearest a float, ties to even. Magnitudes beyond the largest finite value 448
     * saturate to ±448, as quantizers want (PyTorch's cast gives NaN instead); NaN gives NaN.
     */
    public static byte floatToF8e4m3(float value) {
        return nearestCode(value, E4M3, 0x7E, 0x7F);
    }

    /**
     * The F8_E5M2 value nearest a float, ties to even. Finite magnitudes beyond the largest finite value 57344
     * saturate to ±57344; infinities stay infinite and NaN gives NaN.
     */
    public static byte floatToF8e5m2(float value) {
        if (Float.isInfinite(value)) return (byte) (value > 0 ? 0x7C : 0xFC);
        return nearestCode(value, E5M2, 0x7B, 0x7F);
    }

    /**
     * The code whose value is nearest, found by bisection over the positive codes {@code 0..maxFinite}, whose
     * values increase with the code in both formats; the sign is the top bit. A tie picks the even code, which is
     * the one with the even mantissa.
     */
    private static byte nearestCode(float value, float[] table, int maxFinite, int nanCode) {
        if (Float.isNaN(value)) return (byte) nanCode;
        int sign = Float.floatToRawIntBits(value) < 0 ? 0x80 : 0;
        float magnitude = Math.abs(value);
        if (magnitude >= table[maxFinite]) return (byte) (sign | maxFinite);
        int low = 0;
        int high = maxFinite;
        // Invariant: table[low] <= magnitude < table[high].
        while (high - low > 1) {
            int mid = (low + high) >>> 1;
            if (table[mid] <= magnitude) low = mid;
            else high = mid;
        }
        float below = magnitude - table[low];
        float above = table[high] - magnitude;
        int code = below < above ? low : above < below ? high : ((low & 1) == 0 ? low : high);
        return (byte) (sign | code);
    }

    private static float decodeE4M3(int code) {
        int exponent = (code >>> 3) & 0xF;
        int mantissa = code & 0x7;
        float sign = (code & 0x80) != 0 ? -1f : 1f;
        if (exponent == 0xF && mantissa == 0x7) return Float.NaN;
        if (exponent == 0) return sign * Math.scalb(mantissa / 8f, -6);
        return sign * Math.scalb(1 + mantissa / 8f, exponent - 7);
    }

    private static short[] shorts(MemorySegment data, int n) {
        short[] bits = new short[n];
        MemorySegment.copy(data, I16, 0, bits, 0, n);
        return bits;
    }

    private static int elementCount(CheckpointTensor tensor) {
        long n = tensor.size();
        if (n > MAX_ARRAY) {
            throw new InvalidCheckpointException(tensor.file(), tensor.name(),
                    n + " elements are too many for one Java array");
        }
        long expectedBytes = n * tensor.dtype().byteSize();
        if (tensor.data().byteSize() != expectedBytes) {
            throw new InvalidCheckpointException(tensor.file(), tensor.name(), "holds " + tensor.data().byteSize()
                    + " bytes, but its shape and dtype need " + expectedBytes);
        }
        return (int) n;
    }
}
