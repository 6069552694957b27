package dev.kiln.quant.fp8.internal;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The FP8 E4M3FN format (1 sign bit, 4 exponent bits with bias 7, 3 mantissa bits, no infinities, NaN at
 * {@code S.1111.111}, largest finite value 448): decoding to f32, scalar and vectorised, and rounding f32 to it.
 */
public final class E4m3 {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED;
    /** Floats per vector. */
    public static final int L = F.length();
    /**
     * Codes decoded per vector load: one int vector holds four codes per lane, extracted by shifts, so no
     * byte-to-int widening (slow in the Vector API) is needed. The four float vectors of a chunk hold columns
     * {@code 4j + k} for {@code k = 0..3}: kernels permute the activations to match (see {@link ColumnOrder}).
     */
    public static final int CHUNK = 4 * L;

    /** The largest finite magnitude. */
    public static final float MAX = 448f;
    /** Code of +448, the largest finite positive value. */
    private static final int MAX_CODE = 0x7E;
    /** Code of the positive quiet NaN. */
    private static final int NAN_CODE = 0x7F;
    /** The f32 exponent bias minus the e4m3 one, placed in the f32 exponent field. */
    private static final int REBIAS = (127 - 7) << 23;

    private static final float[] VALUES = new float[256];

    static {
        for (int code = 0; code < 256; code++) VALUES[code] = decodeBits(code);
    }

    private E4m3() {}

    /** The value of a code; exact. */
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

    /**
     * Decodes the code in the low byte of every int lane (the bits above it are ignored), exactly. Normal numbers
     * move their exponent and mantissa into f32 position and re-bias. A subnormal {@code 0.0000.mmm = m · 2⁻⁹} is
     * first built as the normal {@code 2⁻⁶ · (1 + m/8)} and then {@code 2⁻⁶} is subtracted (exact), which avoids
     * both denormal f32 arithmetic (slow on x86) and a conversion. The NaN code decodes as 480: checkpoints do not
     * contain it.
     */
    static FloatVector decodeLowBytes(IntVector lanes) {
        IntVector magnitude = lanes.and(0x7F);
        return withSign(magnitude(magnitude, magnitude.compare(VectorOperators.LT, 8)), lanes);
    }

    // The decoding is split into methods of at most 35 bytes of bytecode: C2 inlines those at every call site,
    // hot or not, and a Vector API value that crosses a call that was not inlined is boxed on the heap.

    private static FloatVector magnitude(IntVector magnitude, VectorMask<Integer> subnormal) {
        return normalBits(magnitude, subnormal).reinterpretAsFloats().sub(0x1p-6f, subnormal.cast(F));
    }

    private static IntVector normalBits(IntVector magnitude, VectorMask<Integer> subnormal) {
        return magnitude.lanewise(VectorOperators.LSHL, 20).add(REBIAS).add(1 << 23, subnormal);
    }

    private static FloatVector withSign(FloatVector magnitude, IntVector lanes) {
        return magnitude.reinterpretAsInts().or(lanes.and(0x80).lanewise(VectorOperators.LSHL, 24)).reinterpretAsFloats();
    }

    /**
     * Loads {@link #CHUNK} codes at byte offset {@code offset} as int lanes, four codes per lane: code
     * {@code 4j + k} of the chunk is byte k of lane j.
     */
    static IntVector loadChunk(MemorySegment data, long offset) {
        return IntVector.fromMemorySegment(I, data, offset, ByteOrder.LITTLE_ENDIAN);
    }

    /** The codes {@code 4j + k} ({@code j < L}) of a chunk loaded by {@link #loadChunk}, decoded. */
    static FloatVector decodeChunkPart(IntVector chunk, int k) {
        return decodeLowBytes(k == 0 ? chunk : chunk.lanewise(VectorOperators.LSHR, 8 * k));
    }
}
