package dev.kiln.quant.fp8.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.loader.safetensors.TensorValues;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;
import jdk.incubator.vector.IntVector;
import org.junit.jupiter.api.Test;

/**
 * The codec against the safetensors loader's independent e4m3 tables: every code decodes alike (scalar and
 * vectorised, subnormals included), and rounding is to nearest with ties to the even code.
 */
class E4m3Test {

    @Test
    void everyCodeDecodesAsTheLoaderDecodesIt() {
        for (int code = 0; code < 256; code++) {
            float expected = TensorValues.f8e4m3ToFloat((byte) code);
            float actual = E4m3.toFloat((byte) code);
            if (Float.isNaN(expected)) assertTrue(Float.isNaN(actual), "code " + code);
            else assertEquals(Float.floatToIntBits(expected), Float.floatToIntBits(actual), "code " + code);
        }
        assertEquals(448f, E4m3.toFloat((byte) 0x7E));
        assertEquals(0x1p-9f, E4m3.toFloat((byte) 0x01), "smallest subnormal");
        assertEquals(-0x1p-6f, E4m3.toFloat((byte) 0x88), "smallest negative normal");
    }

    @Test
    void theVectorDecoderAgreesWithTheScalarOneOnEveryFiniteCode() {
        try (Arena arena = Arena.ofConfined()) {
            // Every finite code, at an odd offset so that loads are unaligned; whole chunks of CHUNK codes.
            int n = (256 + E4m3.CHUNK - 1) / E4m3.CHUNK * E4m3.CHUNK;
            MemorySegment codes = arena.allocate(n + 1).asSlice(1);
            for (int i = 0; i < n; i++) {
                int code = i % 256;
                if ((code & 0x7F) == 0x7F) code &= 0xFE; // NaN codes are not weights
                codes.set(ValueLayout.JAVA_BYTE, i, (byte) code);
            }
            for (int c = 0; c < n; c += E4m3.CHUNK) {
                IntVector chunk = E4m3.loadChunk(codes, c);
                for (int k = 0; k < 4; k++) {
                    float[] decoded = E4m3.decodeChunkPart(chunk, k).toArray();
                    for (int j = 0; j < E4m3.L; j++) {
                        long index = c + 4L * j + k;
                        float expected = E4m3.toFloat(codes.get(ValueLayout.JAVA_BYTE, index));
                        assertEquals(Float.floatToIntBits(expected), Float.floatToIntBits(decoded[j]), "code at " + index);
                    }
                }
            }
        }
    }

    @Test
    void roundingIsToNearestTiesToEvenAndSaturates() {
        for (int code = 0; code < 0x7E; code++) {
            float value = E4m3.toFloat((byte) code);
            assertEquals((byte) code, E4m3.fromFloat(value), "exact value of code " + code);
            assertEquals((byte) (code | 0x80), E4m3.fromFloat(-value), "negated code " + code);
            float next = E4m3.toFloat((byte) (code + 1));
            float midpoint = (value + next) / 2; // exact: both are short binary fractions
            int even = (code & 1) == 0 ? code : code + 1;
            assertEquals((byte) even, E4m3.fromFloat(midpoint), "tie between codes " + code + " and " + (code + 1));
            assertEquals((byte) code, E4m3.fromFloat(Math.nextDown(midpoint)));
            assertEquals((byte) (code + 1), E4m3.fromFloat(Math.nextUp(midpoint)));
        }
        assertEquals((byte) 0x7E, E4m3.fromFloat(1e9f));
        assertEquals((byte) 0xFE, E4m3.fromFloat(-500f));
        assertTrue(Float.isNaN(E4m3.toFloat(E4m3.fromFloat(Float.NaN))));

        Random random = new Random(3);
        for (int i = 0; i < 100_000; i++) {
            float v = (float) (random.nextGaussian() * Math.pow(2, random.nextInt(-14, 10)));
            assertEquals(TensorValues.floatToF8e4m3(v), E4m3.fromFloat(v), "value " + v);
        }
    }
}
