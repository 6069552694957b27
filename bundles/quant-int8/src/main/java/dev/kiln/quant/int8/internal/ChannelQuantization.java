package dev.kiln.quant.int8.internal;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.backend.cpu.WorkerPool;
import dev.kiln.quant.cpu.KernelScratch;
import dev.kiln.quant.cpu.TensorRows;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Symmetric per-output-channel INT8 quantization, as PaddleNLP's {@code weight_only_int8} does it: each row's
 * largest magnitude maps to 127 ({@code s = amax / 127}) and every element becomes {@code q = round(w / s)}, ties to
 * even, computed in double so that the result does not depend on how the division is vectorised. A row of zeros gets
 * scale 0 and codes 0.
 */
public final class ChannelQuantization {
    /** The largest code: -127..127, symmetric (-128 unused, as in every per-channel INT8 scheme). */
    public static final int MAX_CODE = 127;

    private ChannelQuantization() {}

    /**
     * Quantizes a 2-D F32, F16 or BF16 tensor into memory owned by the returned weight, rows spread over the pool.
     *
     * @throws IllegalArgumentException when the tensor is not such a matrix
     */
    public static Int8ChannelWeight quantize(CheckpointTensor tensor, WorkerPool pool, KernelScratch scratch) {
        TensorRows.requireFloatingMatrix(tensor, "weight_only_int8");
        int rows = tensor.rows();
        int columns = tensor.columns();
        int depth = Int8ChannelWeight.paddedColumns(columns);
        float[] scales = new float[rows];
        Arena arena = Arena.ofShared();
        try {
            MemorySegment codes = arena.allocate((long) rows * depth, 64);
            pool.parallelFor(rows, Math.max(1, rows / (8 * pool.threads())), (worker, from, to) -> {
                float[] values = new float[columns];
                byte[] row = new byte[depth];
                for (int r = from; r < to; r++) {
                    TensorRows.read(tensor, r, values);
                    scales[r] = quantizeRow(values, row);
                    MemorySegment.copy(row, 0, codes, ValueLayout.JAVA_BYTE, (long) r * depth, depth);
                }
            });
            return new Int8ChannelWeight(codes, scales, rows, columns, depth, pool, scratch, arena);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /**
     * Quantizes one row into {@code codes} (its first {@code values.length} entries; the rest are left zero) and
     * returns its scale.
     *
     * @throws IllegalArgumentException when the row holds a value that is not finite
     */
    public static float quantizeRow(float[] values, byte[] codes) {
        float amax = 0;
        for (float v : values) {
            if (!Float.isFinite(v)) throw new IllegalArgumentException("holds a non-finite value " + v);
            amax = Math.max(amax, Math.abs(v));
        }
        float scale = amax / MAX_CODE;
        for (int c = 0; c < values.length; c++) {
            double q = scale == 0 ? 0 : Math.rint(values[c] / (double) scale);
            codes[c] = (byte) Math.max(-MAX_CODE, Math.min(MAX_CODE, q));
        }
        return scale;
    }
}
