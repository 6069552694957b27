package dev.kiln.backend.cuda.quant;

/**
 * The FP8 E4M3FN format (1 sign bit, 4 exponent bits with bias 7, 3 mantissa bits, no infinities, NaN at
 * {@code S.1111.111}, largest finite value 448): decoding to f32 and rounding f32 to it, the CPU bundle's
 * {@code dev.kiln.quant.fp8.internal.E4m3} operation for operation (its scalar part; that class needs the Vector API
 * module, which this bundle does not). The device kernels decode by the same rule ({@code quant_kernels.cu}).
 */
public final class E4m3 {
    /** The largest finite magnitude. */
    public static final float MAX = 448f;
    /** Code of +448, the largest finite positive value. */
    private static final int MAX_CODE = 0x7E;
    /** Code of the positive quiet NaN. */
    private static final int NAN_CODE = 0x7F;

    private static final float[] VALUES = new float[256];

    static {
        for (int code = 0; code < 256; code++) VALUES[code] = decodeBits(code);
    }

    private E4m3() {}

    /** The value of a code; exact. The NaN codes give NaN. */
    public static float toFloat(byte code) {
        return VALUES[code & 0xFF];
    }

    private static float decodeBits(int code) {
        int exponent = (code >>> 3) & 0xF;
        int mantissa = code & 0x7;
        float sign = (code & 0x80) != 0 ? -1f : 1f;
        if (exponent == 0xF && mantissa == 0x7) return Float.NaN;
        if (exponent == 0) return sign * Math.scalb(mantissa / 8f, -6);
        return sign * Math.scalb(1 + mantissa / 8f, exponent - 7);
    }

    /**
     * The code nearest a float, ties to the even code (the even mantissa). Magnitudes beyond 448 saturate to ±448,
     * as weight quantizers want; NaN stays NaN.
     */
    public static byte fromFloat(float value) {
        if (Float.isNaN(value)) return (byte) NAN_CODE;
        int sign = Float.floatToRawIntBits(value) < 0 ? 0x80 : 0;
        float magnitude = Math.abs(value);
        if (magnitude >= MAX) return (byte) (sign | MAX_CODE);
        // Positive codes 0..0x7E have increasing values: bisect for VALUES[low] <= magnitude < VALUES[high].
        int low = 0;
        int high = MAX_CODE;
        while (high - low > 1) {
            int mid = (low + high) >>> 1;
            if (VALUES[mid] <= magnitude) low = mid;
            else high = mid;
        }
        // Both differences are exact (Sterbenz): neighbouring codes lie within a factor of two of each other.
        float below = magnitude - VALUES[low];
        float above = VALUES[high] - magnitude;
        int code = below < above ? low : above < below ? high : ((low & 1) == 0 ? low : high);
        return (byte) (sign | code);
    }
}
