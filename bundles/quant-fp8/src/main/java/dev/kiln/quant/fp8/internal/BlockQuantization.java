package dev.kiln.quant.fp8.internal;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.backend.cpu.WorkerPool;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Quantizes a floating-point weight to FP8 e4m3 blocks on load, the way DeepSeek's checkpoints were made: each
 * block's scale maps its largest magnitude to 448 ({@code scale = amax / 448}), each element becomes the code
 * nearest {@code w / scale} (ties to even).
 */
public final class BlockQuantization {
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private BlockQuantization() {}

    /**
     * Quantizes a 2-D F32, F16 or BF16 tensor into memory owned by the returned weight.
     *
     * @throws IllegalArgumentException when the tensor is not 2-D or not of those types
     */
    public static Fp8BlockWeight quantize(CheckpointTensor tensor, int blockRows, int blockColumns, WorkerPool pool,
                                          KernelScratch scratch) {
        long[] shape = tensor.shape();
        if (shape.length != 2 || shape[0] < 1 || shape[1] < 1 || shape[0] * shape[1] > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(tensor.name() + ": cannot quantize a tensor of shape "
                    + java.util.Arrays.toString(shape));
        }
        switch (tensor.dtype()) {
            case F32, F16, BF16 -> { }
            default -> throw new IllegalArgumentException(tensor.name() + ": cannot quantize " + tensor.dtype() + " to fp8");
        }
        int rows = (int) shape[0];
        int columns = (int) shape[1];
        int rowBlocks = Fp8BlockWeight.ceilDiv(rows, blockRows);
        int columnBlocks = Fp8BlockWeight.ceilDiv(columns, blockColumns);
        float[] scales = new float[rowBlocks * columnBlocks];
        Arena arena = Arena.ofShared();
        try {
            MemorySegment codes = arena.allocate((long) rows * columns);
            pool.parallelFor(rowBlocks, 1, (worker, from, to) -> {
                float[] values = new float[blockRows * columns];
                for (int rb = from; rb < to; rb++) {
                    quantizeRowBlock(tensor, rb, blockRows, blockColumns, rows, columns, columnBlocks, values, codes, scales);
                }
            });
            return new Fp8BlockWeight(codes, scales, rows, columns, blockRows, blockColumns, pool, scratch, arena);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    private static void quantizeRowBlock(CheckpointTensor tensor, int rb, int blockRows, int blockColumns, int rows,
                                         int columns, int columnBlocks, float[] values, MemorySegment codes,
                                         float[] scales) {
        int r0 = rb * blockRows;
        int count = Math.min(blockRows, rows - r0);
        for (int i = 0; i < count; i++) read(tensor, (long) (r0 + i) * columns, columns, values, i * columns);
        for (int cb = 0; cb < columnBlocks; cb++) {
            int c0 = cb * blockColumns;
            int c1 = Math.min(columns, c0 + blockColumns);
            float amax = 0;
            for (int i = 0; i < count; i++) {
                for (int c = c0; c < c1; c++) amax = Math.max(amax, Math.abs(values[i * columns + c]));
            }
            float scale = amax > 0 ? amax / E4m3.MAX : 1f;
            scales[rb * columnBlocks + cb] = scale;
            for (int i = 0; i < count; i++) {
                long row = (long) (r0 + i) * columns;
                for (int c = c0; c < c1; c++) {
                    codes.set(ValueLayout.JAVA_BYTE, row + c, E4m3.fromFloat(values[i * columns + c] / scale));
                }
            }
        }
    }

    /** Widens {@code count} elements starting at element {@code first} of the tensor to f32. */
    private static void read(CheckpointTensor tensor, long first, int count, float[] dst, int dstOffset) {
        MemorySegment data = tensor.data();
        switch (tensor.dtype()) {
            case F32 -> MemorySegment.copy(data, FLOAT, 4 * first, dst, dstOffset, count);
            case BF16 -> {
                for (int i = 0; i < count; i++) dst[dstOffset + i] = Float.intBitsToFloat(data.get(SHORT, 2 * (first + i)) << 16);
            }
            case F16 -> {
                for (int i = 0; i < count; i++) dst[dstOffset + i] = Float.float16ToFloat(data.get(SHORT, 2 * (first + i)));
            }
            default -> throw new IllegalStateException("unreachable: " + tensor.dtype());
        }
    }
}
