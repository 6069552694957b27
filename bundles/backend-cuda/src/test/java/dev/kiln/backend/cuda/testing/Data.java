package dev.kiln.backend.cuda.testing;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Random;

/** Random test data and checkpoint tensors made of it. */
public final class Data {
    private static final ValueLayout.OfShort HALF = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private Data() {}

    /** Uniform values in [-1, 1). */
    public static float[] uniform(Random random, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = random.nextFloat() * 2 - 1;
        return v;
    }

    /** Values the tensor's type holds exactly, for comparing backends on identical weights. */
    public static float[] representable(Random random, int n, DType type) {
        float[] v = uniform(random, n);
        for (int i = 0; i < n; i++) {
            v[i] = switch (type) {
                case BF16 -> Float.intBitsToFloat(Float.floatToRawIntBits(v[i]) & 0xffff0000);
                case F16 -> Float.float16ToFloat(Float.floatToFloat16(v[i]));
                default -> v[i];
            };
        }
        return v;
    }

    /** A checkpoint tensor holding the values in the given floating-point type. */
    public static CheckpointTensor tensor(String name, DType type, float[] values, long... shape) {
        MemorySegment data = Arena.ofAuto().allocate((long) values.length * type.byteSize(), 16);
        for (int i = 0; i < values.length; i++) {
            switch (type) {
                case BF16 -> data.set(HALF, 2L * i, (short) (Float.floatToRawIntBits(values[i]) >>> 16));
                case F16 -> data.set(HALF, 2L * i, Float.floatToFloat16(values[i]));
                case F32 -> data.set(FLOAT, 4L * i, values[i]);
                default -> throw new IllegalArgumentException(type.toString());
            }
        }
        return new CheckpointTensor(name, type, shape, data, Path.of("generated"));
    }

    /** The largest absolute difference; NaN anywhere makes it NaN. */
    public static double maxAbsDiff(float[] actual, float[] expected) {
        if (actual.length != expected.length) throw new AssertionError("lengths " + actual.length + " vs " + expected.length);
        double max = 0;
        for (int i = 0; i < actual.length; i++) {
            double d = Math.abs((double) actual[i] - expected[i]);
            if (!(d <= max)) max = d;
        }
        return max;
    }

    /** The largest absolute value. */
    public static double maxAbs(float[] values) {
        double max = 0;
        for (float v : values) max = Math.max(max, Math.abs(v));
        return max;
    }

    /** An array of NaNs, written to outputs first so that any element a kernel fails to write shows. */
    public static float[] poison(int n) {
        float[] v = new float[n];
        java.util.Arrays.fill(v, Float.NaN);
        return v;
    }
}
