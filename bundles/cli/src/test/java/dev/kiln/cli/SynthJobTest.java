package dev.kiln.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SynthJobTest {
    @Test
    void qwen15bShapesAddUpToTheRealModel() {
        Map<String, long[]> shapes = SyntheticModels.R1_DISTILL_QWEN_1_5B.tensorShapes();
        long params = shapes.values().stream().mapToLong(s -> {
            long n = 1;
            for (long d : s) n *= d;
            return n;
        }).sum();
        // DeepSeek-R1-Distill-Qwen-1.5B has 1,777,088,000 parameters (untied embedding and head).
        assertEquals(1_777_088_000L, params);
        assertEquals(28 * 12 + 3, shapes.size());
    }

    @Test
    void llama8bHasTheRealParameterCount() {
        long params = SyntheticModels.R1_DISTILL_LLAMA_8B.tensorShapes().values().stream().mapToLong(s -> {
            long n = 1;
            for (long d : s) n *= d;
            return n;
        }).sum();
        assertEquals(8_030_261_248L, params);
    }

    @Test
    void randomWeightsHaveTheInitialisationsSpread() {
        ByteBuffer chunk = ByteBuffer.allocate(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
        SynthJob.fillUniformBf16(chunk, 42, (float) (0.02 * Math.sqrt(3)));
        chunk.flip();
        double sum = 0, sq = 0;
        int n = chunk.remaining() / 2;
        for (int i = 0; i < n; i++) {
            float v = Float.intBitsToFloat((chunk.getShort() & 0xffff) << 16);
            sum += v;
            sq += v * v;
        }
        assertEquals(0, sum / n, 1e-3);
        assertEquals(0.02, Math.sqrt(sq / n), 1e-3);
        assertTrue(n == (1 << 19));
    }
}
