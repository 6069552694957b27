package dev.kiln.backend.cuda.quant;

import dev.kiln.api.checkpoint.CheckpointTensor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * Reads the rows of a floating-point checkpoint matrix as f32, one row at a time, so that quantizing never widens a
 * whole tensor. The same checks and widening as the CPU bundles' {@code dev.kiln.quant.cpu.TensorRows}, which this
 * bundle does not import: that package's bundle needs the CPU backend and the Vector API module.
 */
final class FloatRows {
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private FloatRows() {}

    /**
     * Checks that the tensor is a 2-D F32, F16 or BF16 matrix whose bytes match its shape.
     *
     * @param format the format it is to be quantized to, for the message
     * @throws IllegalArgumentException naming what is wrong
     */
    static void requireFloatingMatrix(CheckpointTensor tensor, String format) {
        long[] shape = tensor.shape();
        if (shape.length != 2 || shape[0] < 1 || shape[1] < 1 || shape[0] > Integer.MAX_VALUE || shape[1] > Integer.MAX_VALUE / 2) {
            throw new IllegalArgumentException("cannot quantize a tensor of shape " + Arrays.toString(shape) + " to "
                    + format + ": a linear layer's weight is a 2-D matrix");
        }
        switch (tensor.dtype()) {
            case F32, F16, BF16 -> { }
            default -> throw new IllegalArgumentException("is stored as " + tensor.dtype() + "; " + format
                    + " quantizes F32, F16 or BF16 weights on load (a checkpoint quantized in another format is"
                    + " served with its own quantizer)");
        }
        long expected = shape[0] * shape[1] * tensor.dtype().byteSize();
        if (tensor.data().byteSize() != expected) {
            throw new IllegalArgumentException("holds " + tensor.data().byteSize() + " bytes, its shape "
                    + Arrays.toString(shape) + " of " + tensor.dtype() + " needs " + expected);
        }
    }

    /** Widens row {@code row} of the matrix ({@code columns} values) to f32 into {@code dst}. */
    static void read(CheckpointTensor tensor, int row, float[] dst) {
        int columns = tensor.columns();
        long first = (long) row * columns;
        MemorySegment data = tensor.data();
        switch (tensor.dtype()) {
            case F32 -> MemorySegment.copy(data, FLOAT, 4 * first, dst, 0, columns);
            case BF16 -> {
                for (int i = 0; i < columns; i++) dst[i] = Float.intBitsToFloat(data.get(SHORT, 2 * (first + i)) << 16);
            }
            case F16 -> {
                for (int i = 0; i < columns; i++) dst[i] = Float.float16ToFloat(data.get(SHORT, 2 * (first + i)));
            }
            default -> throw new IllegalArgumentException(tensor.name() + ": not a floating-point matrix: " + tensor.dtype());
        }
    }
}
