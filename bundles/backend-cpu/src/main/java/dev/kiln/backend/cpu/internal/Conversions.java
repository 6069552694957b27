package dev.kiln.backend.cpu.internal;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * Widening of stored 16-bit floats (bf16, IEEE half) to f32, scalar and vectorised, reading little-endian
 * checkpoint bytes.
 */
public final class Conversions {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED;
    /** Half the float shape, so that one load widens to exactly one float vector. */
    static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    static final int L = F.length();

    static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

    private Conversions() {}

    /** A bf16 bit pattern as a float: bf16 is the upper half of an f32. */
    public static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat(bits << 16);
    }

    /** Rounds a float to the nearest bf16 (ties to even), as PyTorch does; NaN stays NaN. */
    public static short floatToBf16(float value) {
        int bits = Float.floatToRawIntBits(value);
        if ((bits & 0x7fffffff) > 0x7f800000) return (short) ((bits >>> 16) | 0x40);
        int rounding = 0x7fff + ((bits >>> 16) & 1);
        return (short) ((bits + rounding) >>> 16);
    }

    /** Widens {@code count} bf16 values at byte offset {@code offset} of {@code source} into {@code dst}. */
    public static void bf16ToFloat(MemorySegment source, long offset, float[] dst, int dstOffset, int count) {
        int i = 0;
        for (; i <= count - L; i += L) {
            ShortVector s = ShortVector.fromMemorySegment(S, source, offset + 2L * i, LE);
            IntVector wide = (IntVector) s.convertShape(VectorOperators.S2I, I, 0);
            wide.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoArray(dst, dstOffset + i);
        }
        for (; i < count; i++) dst[dstOffset + i] = bf16ToFloat(source.get(SHORT, offset + 2L * i));
    }

    /** Widens {@code count} IEEE half values at byte offset {@code offset} of {@code source} into {@code dst}. */
    public static void f16ToFloat(MemorySegment source, long offset, float[] dst, int dstOffset, int count) {
        int i = 0;
        for (; i <= count - L; i += L) {
            ShortVector s = ShortVector.fromMemorySegment(S, source, offset + 2L * i, LE);
            IntVector h = (IntVector) s.convertShape(VectorOperators.S2I, I, 0);
            f16BitsToFloat(h).intoArray(dst, dstOffset + i);
        }
        for (; i < count; i++) dst[dstOffset + i] = Float.float16ToFloat(source.get(SHORT, offset + 2L * i));
    }

    /**
     * Exact IEEE half to float on int lanes holding a half's bits in their low 16 bits (upper bits ignored).
     * Normal numbers move the exponent by re-biasing; subnormals go through an exact int-to-float conversion
     * (avoiding denormal float arithmetic, which is slow on x86); infinities and NaNs keep an all-ones exponent.
     */
    static FloatVector f16BitsToFloat(IntVector h) {
        IntVector magnitude = h.and(0x7fff);
        IntVector sign = h.and(0x8000).lanewise(VectorOperators.LSHL, 16);
        IntVector bits = magnitude.lanewise(VectorOperators.LSHL, 13).add(0x38000000);
        VectorMask<Integer> special = magnitude.compare(VectorOperators.GE, 0x7c00);
        bits = bits.add(0x38000000, special);
        VectorMask<Integer> subnormal = magnitude.compare(VectorOperators.LT, 0x0400);
        FloatVector small = ((FloatVector) magnitude.convert(VectorOperators.I2F, 0)).mul(0x1p-24f);
        IntVector result = bits.blend(small.reinterpretAsInts(), subnormal);
        return result.or(sign).reinterpretAsFloats();
    }

    /** Copies {@code count} little-endian f32 values at byte offset {@code offset} of {@code source} into {@code dst}. */
    public static void f32ToFloat(MemorySegment source, long offset, float[] dst, int dstOffset, int count) {
        MemorySegment.copy(source, FLOAT, offset, dst, dstOffset, count);
    }
}
