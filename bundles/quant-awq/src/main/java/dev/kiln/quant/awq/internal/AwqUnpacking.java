package dev.kiln.quant.awq.internal;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.backend.cpu.WorkerPool;
import dev.kiln.quant.cpu.Int4GroupWeight;
import dev.kiln.quant.cpu.KernelScratch;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * Reads a linear layer in AutoAWQ's GEMM packing (as {@code awq/modules/linear/gemm.py}, {@code WQLinear_GEMM},
 * writes it) into an {@link Int4GroupWeight}:
 * <ul>
 *   <li>{@code qweight}: int32 {@code [in, out / 8]}. Element {@code [k, j]} holds the 4-bit codes of input column k
 *       for the eight outputs {@code 8j .. 8j + 7}: its nibble i (bits {@code 4i .. 4i + 3}) is output
 *       {@code 8j + ORDER[i]} with {@code ORDER = [0, 2, 4, 6, 1, 3, 5, 7]} (the interleaving AutoAWQ's CUDA kernel
 *       unpacks fastest);</li>
 *   <li>{@code qzeros}: int32 {@code [in / group, out / 8]}, the zero points packed the same way;</li>
 *   <li>{@code scales}: fp16 {@code [in / group, out]};</li>
 *   <li>{@code W[o, k] = (q[k, o] - z[k / group, o]) · s[k / group, o]}, with {@code in} a multiple of the group
 *       size (AutoAWQ asserts it).</li>
 * </ul>
 * The layout is transposed relative to Kiln's ({@code [out, in]}, one row per output), so each packed column of
 * {@code qweight} becomes eight weight rows; the codes are repacked once, on load, into the kernels' layout.
 */
public final class AwqUnpacking {
    /** Nibble i of a packed int holds output {@code 8j + ORDER[i]}. */
    public static final int[] ORDER = {0, 2, 4, 6, 1, 3, 5, 7};
    private static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private AwqUnpacking() {}

    /**
     * Unpacks a layer.
     *
     * @throws IllegalArgumentException naming the tensor whose type or shape is inconsistent, or whose scales are not
     *                                  finite
     */
    public static Int4GroupWeight unpack(CheckpointTensor qweight, CheckpointTensor qzeros, CheckpointTensor scales,
                                         AwqSettings settings, WorkerPool pool, KernelScratch scratch) {
        long[] shape = qweight.shape();
        require(qweight, qweight.dtype() == DType.I32 && shape.length == 2 && shape[0] >= 1 && shape[1] >= 1
                && shape[0] <= Integer.MAX_VALUE && shape[1] <= Integer.MAX_VALUE / 8,
                "must be I32 [in, out / 8], found " + qweight.dtype() + " " + Arrays.toString(shape));
        int columns = (int) shape[0];
        int packed = (int) shape[1];
        int rows = packed * 8;
        int groupSize = settings.groupSizeFor(columns);
        if (columns % groupSize != 0) {
            throw new IllegalArgumentException(qweight.name() + ": " + columns + " input features are not a multiple of"
                    + " the group size " + groupSize + " (quantization_config.group_size)");
        }
        int groups = columns / groupSize;
        require(qzeros, qzeros.dtype() == DType.I32 && Arrays.equals(qzeros.shape(), new long[] {groups, packed}),
                "must be I32 " + Arrays.toString(new long[] {groups, packed}) + " for " + qweight.name() + " "
                        + Arrays.toString(shape) + " in groups of " + groupSize + ", found " + qzeros.dtype() + " "
                        + Arrays.toString(qzeros.shape()));
        require(scales, (scales.dtype() == DType.F16 || scales.dtype() == DType.BF16 || scales.dtype() == DType.F32)
                        && Arrays.equals(scales.shape(), new long[] {groups, rows}),
                "must be F16 " + Arrays.toString(new long[] {groups, rows}) + ", found " + scales.dtype() + " "
                        + Arrays.toString(scales.shape()));
        for (CheckpointTensor t : new CheckpointTensor[] {qweight, qzeros, scales}) {
            require(t, t.data().byteSize() == t.size() * t.dtype().byteSize(), "holds " + t.data().byteSize()
                    + " bytes for its shape " + Arrays.toString(t.shape()));
        }
        float[] s = readScales(scales, groups * rows);
        var builder = new Int4GroupWeight.Builder(rows, columns, groupSize, true);
        try {
            // One packed column of qweight at a time: its eight output rows are unpacked together.
            pool.parallelFor(packed, Math.max(1, packed / (8 * pool.threads())), (worker, from, to) -> {
                byte[][] codes = new byte[8][columns];
                float[] rowScales = new float[groups];
                byte[] rowZeros = new byte[groups];
                for (int j = from; j < to; j++) {
                    for (int k = 0; k < columns; k++) {
                        int word = qweight.data().get(INT, 4 * ((long) k * packed + j));
                        for (int i = 0; i < 8; i++) codes[ORDER[i]][k] = (byte) ((word >>> (4 * i)) & 0xF);
                    }
                    for (int i = 0; i < 8; i++) {
                        int row = 8 * j + ORDER[i];
                        for (int g = 0; g < groups; g++) {
                            int word = qzeros.data().get(INT, 4 * ((long) g * packed + j));
                            rowZeros[g] = (byte) ((word >>> (4 * i)) & 0xF);
                            rowScales[g] = s[g * rows + row];
                            if (!Float.isFinite(rowScales[g])) {
                                throw new IllegalArgumentException(scales.name() + ": scale [" + g + ", " + row + "] is " + rowScales[g]);
                            }
                        }
                        builder.setRow(row, codes[ORDER[i]], rowScales, rowZeros);
                    }
                }
            });
            return builder.build("awq", pool, scratch);
        } catch (RuntimeException e) {
            builder.discard();
            throw e;
        }
    }

    private static float[] readScales(CheckpointTensor scales, int count) {
        MemorySegment data = scales.data();
        float[] out = new float[count];
        for (int i = 0; i < count; i++) {
            out[i] = switch (scales.dtype()) {
                case F16 -> Float.float16ToFloat(data.getAtIndex(SHORT, i));
                case BF16 -> Float.intBitsToFloat(data.getAtIndex(SHORT, i) << 16);
                default -> data.getAtIndex(FLOAT, i);
            };
        }
        return out;
    }

    private static void require(CheckpointTensor tensor, boolean condition, String problem) {
        if (!condition) throw new IllegalArgumentException(tensor.name() + ": " + problem);
    }
}
