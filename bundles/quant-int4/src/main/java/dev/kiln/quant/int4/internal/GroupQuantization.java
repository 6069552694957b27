package dev.kiln.quant.int4.internal;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.backend.cpu.WorkerPool;
import dev.kiln.quant.cpu.Int4GroupWeight;
import dev.kiln.quant.cpu.KernelScratch;
import dev.kiln.quant.cpu.TensorRows;

/**
 * Symmetric group-wise INT4 quantization using all sixteen levels: in each group of consecutive columns the element
 * of largest magnitude, {@code m}, becomes -8 exactly ({@code d = m / -8}, so d takes the opposite sign of m) and
 * every element becomes {@code q = clamp(round(w / d), -8, 7)}, ties to even, computed in double. Stored as
 * {@code u = q + 8} with zero point 8: {@code w ≈ (u - 8) · d}. Mapping the extreme to -8 rather than to ±7 gives
 * the other 15 levels a step of {@code |m| / 8} instead of {@code |m| / 7} (llama.cpp's Q4_0 rule); only elements of
 * the opposite sign beyond {@code 7.5·|d|} are clipped, by at most one step. A group of zeros gets scale 0.
 */
public final class GroupQuantization {
    private GroupQuantization() {}

    /**
     * Quantizes a 2-D F32, F16 or BF16 tensor with groups of {@code groupSize} columns (the last group of a row may be
     * partial), rows spread over the pool.
     *
     * @throws IllegalArgumentException when the tensor is not such a matrix or holds a value that is not finite
     */
    public static Int4GroupWeight quantize(CheckpointTensor tensor, int groupSize, WorkerPool pool, KernelScratch scratch) {
        return quantize(tensor, groupSize, false, pool, scratch);
    }

    /**
     * As {@link #quantize(CheckpointTensor, int, WorkerPool, KernelScratch)}, with the decode kernel that rounds
     * activations to 8 bits where {@code int8Activations} ({@link Int4GroupWeight#int8Activations()}).
     */
    public static Int4GroupWeight quantize(CheckpointTensor tensor, int groupSize, boolean int8Activations,
                                           WorkerPool pool, KernelScratch scratch) {
        TensorRows.requireFloatingMatrix(tensor, "weight_only_int4");
        int rows = tensor.rows();
        int columns = tensor.columns();
        var builder = new Int4GroupWeight.Builder(rows, columns, groupSize, false);
        try {
            pool.parallelFor(rows, Math.max(1, rows / (8 * pool.threads())), (worker, from, to) -> {
                float[] values = new float[columns];
                byte[] codes = new byte[columns];
                float[] scales = new float[builder.groups()];
                for (int r = from; r < to; r++) {
                    TensorRows.read(tensor, r, values);
                    quantizeRow(values, groupSize, codes, scales);
                    builder.setRow(r, codes, scales, null);
                }
            });
            return builder.build("weight_only_int4", pool, scratch, int8Activations);
        } catch (RuntimeException e) {
            builder.discard();
            throw e;
        }
    }

    /**
     * Quantizes one row: codes {@code u} (0..15) into {@code codes}, one scale per group into {@code scales}.
     *
     * @throws IllegalArgumentException when the row holds a value that is not finite
     */
    public static void quantizeRow(float[] values, int groupSize, byte[] codes, float[] scales) {
        for (int g = 0, from = 0; from < values.length; g++, from += groupSize) {
            int to = Math.min(values.length, from + groupSize);
            float extreme = 0;
            for (int c = from; c < to; c++) {
                float v = values[c];
                if (!Float.isFinite(v)) throw new IllegalArgumentException("holds a non-finite value " + v);
                if (Math.abs(v) > Math.abs(extreme)) extreme = v;
            }
            float scale = extreme / -8f;
            scales[g] = scale;
            for (int c = from; c < to; c++) {
                double q = scale == 0 ? 0 : Math.rint(values[c] / (double) scale);
                codes[c] = (byte) (Math.max(-8, Math.min(7, q)) + 8);
            }
        }
    }
}
