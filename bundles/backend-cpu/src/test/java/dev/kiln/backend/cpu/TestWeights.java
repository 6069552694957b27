package dev.kiln.backend.cpu;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.backend.cpu.internal.Conversions;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Random;

/** Random checkpoint tensors in native memory (as a mapped checkpoint would be), with their exact values. */
public final class TestWeights {
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** A tensor and the float values its stored elements decode to. */
    public record Stored(CheckpointTensor tensor, float[] values) {}

    private TestWeights() {}

    /**
     * A tensor of the given type and shape holding random values in [-1, 1) rounded to that type, placed at an odd
     * offset of its segment (checkpoint tensors are not aligned).
     */
    public static Stored random(Arena arena, DType dtype, Random random, long... shape) {
        long n = 1;
        for (long d : shape) n *= d;
        float[] values = new float[(int) n];
        MemorySegment block = arena.allocate(n * dtype.byteSize() + 2, 1);
        MemorySegment data = block.asSlice(2, n * dtype.byteSize());
        for (int i = 0; i < n; i++) {
            float v = random.nextFloat() * 2 - 1;
            switch (dtype) {
                case BF16 -> {
                    short bits = Conversions.floatToBf16(v);
                    data.set(SHORT, 2L * i, bits);
                    values[i] = Conversions.bf16ToFloat(bits);
                }
                case F16 -> {
                    short bits = Float.floatToFloat16(v);
                    data.set(SHORT, 2L * i, bits);
                    values[i] = Float.float16ToFloat(bits);
                }
                case F32 -> {
                    data.set(FLOAT, 4L * i, v);
                    values[i] = v;
                }
                default -> throw new IllegalArgumentException(dtype.toString());
            }
        }
        return new Stored(new CheckpointTensor("test.weight", dtype, shape.clone(), data, Path.of("test.safetensors")), values);
    }

    /** Random activations in [-1, 1). */
    public static float[] activations(Random random, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = random.nextFloat() * 2 - 1;
        return x;
    }
}
