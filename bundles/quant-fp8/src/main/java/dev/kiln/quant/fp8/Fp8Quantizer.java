package dev.kiln.quant.fp8;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.api.tensor.DType;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.backend.cpu.WorkerPool;
import dev.kiln.quant.fp8.internal.BlockQuantization;
import dev.kiln.quant.fp8.internal.Fp8BlockWeight;
import dev.kiln.quant.fp8.internal.KernelScratch;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.WeakHashMap;
import java.util.function.Supplier;
import org.osgi.service.component.annotations.Component;

/**
 * FP8 block weights ({@code kiln.name=fp8}): e4m3 codes with one f32 scale per 128×128 block.
 *
 * <p>A checkpoint whose {@code quantization_config} says {@code "quant_method": "fp8"} with a
 * {@code weight_block_size} (DeepSeek-V3/R1 on the hub, PaddleNLP's a8w8_fp8 exports) is pre-quantized: its
 * {@code F8_E4M3} {@code prefix.weight} and {@code prefix.weight_scale_inv} ({@code W = code · scale_inv} per
 * block) are used in place, memory-mapped, never widened; the layers it keeps in bf16 stay as stored. A
 * floating-point checkpoint is quantized on load with 128×128 blocks, each block's largest magnitude mapped to 448.
 *
 * <p>Activations stay f32 (weight-only semantics): the kernels decode codes to f32 and accumulate in f32.
 */
@Component(service = Quantizer.class,
        property = {KilnProperties.NAME + "=fp8", KilnProperties.BACKEND + "=cpu"})
public final class Fp8Quantizer implements Quantizer {
    /** The block size DeepSeek's checkpoints use, and the one used when quantizing on load. */
    public static final int DEFAULT_BLOCK = 128;
    private static final String SCALE_SUFFIX = ".weight_scale_inv";
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Map<WorkerPool, KernelScratch> scratches = new WeakHashMap<>();

    /** A quantizer; it keeps no state besides kernel buffers per worker pool. */
    public Fp8Quantizer() {}

    @Override
    public String name() {
        return "fp8";
    }

    @Override
    public boolean supports(ComputeBackend backend) {
        return backend instanceof CpuBackend;
    }

    @Override
    public boolean isPreQuantized(Checkpoint checkpoint) {
        return checkpoint.config().getObject("quantization_config")
                .map(q -> "fp8".equals(q.get("quant_method")))
                .orElse(false);
    }

    @Override
    public Weight load(Checkpoint checkpoint, String prefix, ComputeBackend backend) {
        if (!(backend instanceof CpuBackend cpu)) {
            throw new IllegalArgumentException("fp8 weights have kernels for the CPU backend only, not '" + backend.name() + "'");
        }
        CheckpointTensor weight = checkpoint.tensor(prefix + ".weight");
        KernelScratch scratch = scratchFor(cpu.pool());
        if (weight.dtype() == DType.F8_E4M3) {
            int[] block = blockSize(checkpoint.config());
            return mapped(checkpoint, weight, block[0], block[1], cpu.pool(), scratch);
        }
        if (isPreQuantized(checkpoint)) {
            // The checkpoint's authors kept this layer in high precision (routers, heads, MTP projections): so do we.
            return wrap(weight, () -> backend.denseWeight(weight));
        }
        return wrap(weight, () -> BlockQuantization.quantize(weight, DEFAULT_BLOCK, DEFAULT_BLOCK, cpu.pool(), scratch));
    }

    private synchronized KernelScratch scratchFor(WorkerPool pool) {
        return scratches.computeIfAbsent(pool, p -> new KernelScratch(p.threads()));
    }

    /** The {@code weight_block_size} of a pre-quantized checkpoint, refusing formats without blocks. */
    private static int[] blockSize(ModelConfig config) {
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

    private static Weight mapped(Checkpoint checkpoint, CheckpointTensor weight, int blockRows, int blockColumns,
                                 WorkerPool pool, KernelScratch scratch) {
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
        return new Fp8BlockWeight(weight.data(), scales, rows, columns, blockRows, blockColumns, pool, scratch, null);
    }

    private static int ceilDiv(int a, int b) {
        return Math.ceilDiv(a, b); // a + b - 1 would overflow for blocks near Integer.MAX_VALUE
    }

    /** Runs a placement, naming the tensor when the backend or the quantization refuses it. */
    private static Weight wrap(CheckpointTensor tensor, Supplier<Weight> placement) {
        try {
            return placement.get();
        } catch (IllegalArgumentException e) {
            throw new InvalidCheckpointException(tensor.file(), tensor.name(), e.getMessage(), e);
        }
    }
}
