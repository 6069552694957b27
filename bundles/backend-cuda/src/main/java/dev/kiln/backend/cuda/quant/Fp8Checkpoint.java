package dev.kiln.backend.cuda.quant;

import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.api.tensor.DType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * How a pre-quantized FP8 checkpoint (DeepSeek-V3/R1 on the hub, PaddleNLP's a8w8_fp8 exports) is read: its
 * {@code quantization_config} ({@code "quant_method": "fp8"}, {@code "fmt": "e4m3"}, {@code weight_block_size}) and,
 * per linear layer, the {@code F8_E4M3} {@code prefix.weight} {@code [out, in]} with its F32
 * {@code prefix.weight_scale_inv} {@code [ceil(out / blockRows), ceil(in / blockColumns)]}, {@code W = code ·
 * scale_inv} per block. The CPU bundle's {@code Fp8Quantizer} checks, refusals and messages, one for one, so that a
 * checkpoint one backend serves the other serves too.
 */
public final class Fp8Checkpoint {
    private static final String SCALE_SUFFIX = ".weight_scale_inv";
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private Fp8Checkpoint() {}

    /** Whether the checkpoint's {@code quantization_config} names the {@code fp8} method. */
    public static boolean isPreQuantized(Checkpoint checkpoint) {
        return checkpoint.config().getObject("quantization_config")
                .map(q -> "fp8".equals(q.get("quant_method")))
                .orElse(false);
    }

    /**
     * The {@code weight_block_size} {@code {rows, columns}} of a pre-quantized checkpoint.
     *
     * @throws InvalidCheckpointException naming the field when the configuration is missing, is not e4m3 or has no
     *                                    block size
     */
    public static int[] blockSize(ModelConfig config) {
        Map<String, Object> q = config.getObject("quantization_config").orElseThrow(() -> config.invalid(
                "quantization_config", "is missing, but the checkpoint stores F8_E4M3 weights"));
        Object fmt = q.getOrDefault("fmt", "e4m3");
        if (!"e4m3".equals(fmt)) {
            throw config.invalid("quantization_config.fmt", "'" + fmt + "' is not supported (supported: e4m3)");
        }
        Object size = q.get("weight_block_size");
        if (size instanceof List<?> l && l.size() == 2 && l.get(0) instanceof Number r && l.get(1) instanceof Number c
                && r.doubleValue() >= 1 && c.doubleValue() >= 1
                && r.doubleValue() <= Integer.MAX_VALUE && c.doubleValue() <= Integer.MAX_VALUE
                && r.doubleValue() == Math.rint(r.doubleValue()) && c.doubleValue() == Math.rint(c.doubleValue())) {
            return new int[] {r.intValue(), c.intValue()};
        }
        throw config.invalid("quantization_config.weight_block_size",
                size == null ? "is missing: only block-scaled fp8 is supported" : "expected [rows, columns], found " + size);
    }

    /**
     * Checks an {@code F8_E4M3} weight's shape and bytes and returns its block scales, row-major over the blocks.
     *
     * @throws InvalidCheckpointException naming the tensor when the weight is not a 2-D matrix of its bytes, or its
     *                                    {@code weight_scale_inv} is missing, not F32, not of the blocks' shape, or
     *                                    holds a scale that is not finite
     */
    public static float[] blockScales(Checkpoint checkpoint, CheckpointTensor weight, int blockRows, int blockColumns) {
        long[] shape = weight.shape();
        if (shape.length != 2 || shape[0] < 1 || shape[1] < 1 || shape[0] > Integer.MAX_VALUE || shape[1] > Integer.MAX_VALUE) {
            throw new InvalidCheckpointException(weight.file(), weight.name(), "an fp8 weight must be 2-D, found shape "
                    + Arrays.toString(shape));
        }
        int rows = (int) shape[0];
        int columns = (int) shape[1];
        if (weight.data().byteSize() != (long) rows * columns) {
            throw new InvalidCheckpointException(weight.file(), weight.name(), "holds " + weight.data().byteSize()
                    + " bytes for shape " + Arrays.toString(shape));
        }
        String scaleName = weight.name().substring(0, weight.name().length() - ".weight".length()) + SCALE_SUFFIX;
        CheckpointTensor scale = checkpoint.find(scaleName).orElseThrow(() -> new InvalidCheckpointException(
                weight.file(), scaleName, "is missing: the F8_E4M3 weight " + weight.name() + " needs its block scales"));
        long[] expected = {ceilDiv(rows, blockRows), ceilDiv(columns, blockColumns)};
        if (scale.dtype() != DType.F32 || !Arrays.equals(scale.shape(), expected)
                || scale.data().byteSize() != expected[0] * expected[1] * Float.BYTES) {
            throw new InvalidCheckpointException(scale.file(), scaleName, "is " + scale.dtype() + " "
                    + Arrays.toString(scale.shape()) + ", blocks of " + blockRows + "x" + blockColumns + " over "
                    + Arrays.toString(shape) + " need F32 " + Arrays.toString(expected));
        }
        float[] scales = new float[(int) (expected[0] * expected[1])];
        MemorySegment.copy(scale.data(), FLOAT, 0, scales, 0, scales.length);
        for (float s : scales) {
            if (!Float.isFinite(s)) {
                throw new InvalidCheckpointException(scale.file(), scaleName, "holds a non-finite scale " + s);
            }
        }
        return scales;
    }

    private static int ceilDiv(int a, int b) {
        return Math.ceilDiv(a, b); // a + b - 1 would overflow for blocks near Integer.MAX_VALUE
    }
}
