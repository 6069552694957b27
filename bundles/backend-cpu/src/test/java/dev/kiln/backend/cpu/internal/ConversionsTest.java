package dev.kiln.backend.cpu.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import org.junit.jupiter.api.Test;

/** The vectorised widenings agree with the JDK's scalar definitions on every 16-bit pattern. */
class ConversionsTest {
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @Test
    void everyHalfAndBf16PatternWidensExactly() {
        try (Arena arena = Arena.ofConfined()) {
            // One element of padding in front: vector loads must not need alignment.
            MemorySegment all = arena.allocate(2 * 65537L, 1);
            for (int i = 0; i < 65536; i++) all.set(SHORT, 2L + 2L * i, (short) i);
            float[] half = new float[65536];
            float[] bf16 = new float[65536];
            Conversions.f16ToFloat(all, 2, half, 0, 65536);
            Conversions.bf16ToFloat(all, 2, bf16, 0, 65536);
            for (int i = 0; i < 65536; i++) {
                float expectedHalf = Float.float16ToFloat((short) i);
                float expectedBf16 = Float.intBitsToFloat(i << 16);
                if (Float.isNaN(expectedHalf)) assertTrue(Float.isNaN(half[i]), "half " + Integer.toHexString(i));
                else assertEquals(Float.floatToRawIntBits(expectedHalf), Float.floatToRawIntBits(half[i]), "half " + Integer.toHexString(i));
                assertEquals(Float.floatToRawIntBits(expectedBf16), Float.floatToRawIntBits(bf16[i]), "bf16 " + Integer.toHexString(i));
            }
        }
    }

    @Test
    void bf16RoundingIsToNearestEven() {
        assertEquals((short) 0x3f80, Conversions.floatToBf16(1.0f));
        // 1 + 2^-8 is halfway between two bf16 values: ties go to the even mantissa (down).
        assertEquals((short) 0x3f80, Conversions.floatToBf16(1.0f + 0x1p-8f));
        assertEquals((short) 0x3f81, Conversions.floatToBf16(1.0f + 0x1p-8f + 0x1p-20f));
        assertEquals((short) 0x3f82, Conversions.floatToBf16(1.0f + 3 * 0x1p-8f));
        assertTrue(Float.isNaN(Conversions.bf16ToFloat(Conversions.floatToBf16(Float.NaN))));
    }
}
