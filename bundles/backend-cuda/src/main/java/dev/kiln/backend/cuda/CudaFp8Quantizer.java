package dev.kiln.backend.cuda;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.api.tensor.DType;
import dev.kiln.backend.cuda.quant.Fp8Blocks;
import dev.kiln.backend.cuda.quant.Fp8Checkpoint;
import java.util.function.Supplier;
import org.osgi.service.component.annotations.Component;

/**
 * FP8 block weights on the CUDA backend ({@code kiln.name=fp8}, {@code kiln.backend=cuda}): e4m3 codes, one byte per
 * weight, with one f32 scale per 128×128 block, resident on the device and decoded inside the kernels.
 *
 * <p>A checkpoint whose {@code quantization_config} says {@code "quant_method": "fp8"} (DeepSeek-V3/R1 on the hub) is
 * pre-quantized: its {@code F8_E4M3} {@code prefix.weight} and {@code prefix.weight_scale_inv} are uploaded as stored
 * ({@code W = code · scale_inv} per block of its {@code weight_block_size}); the layers it keeps in bf16 stay dense. A
 * floating-point checkpoint served with {@code --quantization fp8} is quantized on load in 128×128 blocks, each
 * block's largest magnitude mapped to 448. Both exactly as the CPU bundle's {@code fp8} quantizer does it (same
 * checks, same codes and scales), so the two backends serve one checkpoint with the same weights.
 *
 * <p>Selected with {@code kiln serve --backend cuda} (a pre-quantized checkpoint names its format) or
 * {@code --quantization fp8}. Enabled together with the {@link CudaBackend} when a device is present.
 */
@Component(service = Quantizer.class, enabled = false,
        property = {KilnProperties.NAME + "=fp8", KilnProperties.BACKEND + "=cuda"})
public final class CudaFp8Quantizer implements Quantizer {
    /** A quantizer; it holds no state. */
    public CudaFp8Quantizer() {}

    @Override
    public String name() {
        return "fp8";
    }

    @Override
    public boolean supports(ComputeBackend backend) {
        return backend instanceof CudaBackend;
    }

    @Override
    public boolean isPreQuantized(Checkpoint checkpoint) {
        return Fp8Checkpoint.isPreQuantized(checkpoint);
    }

    @Override
    public Weight load(Checkpoint checkpoint, String prefix, ComputeBackend backend) {
        if (!(backend instanceof CudaBackend cuda)) {
            throw new IllegalArgumentException("this fp8 quantizer has kernels for the CUDA backend only, not '"
                    + backend.name() + "'");
        }
        CheckpointTensor weight = checkpoint.tensor(prefix + ".weight");
        if (weight.dtype() == DType.F8_E4M3) {
            int[] block = Fp8Checkpoint.blockSize(checkpoint.config());
            float[] scales = Fp8Checkpoint.blockScales(checkpoint, weight, block[0], block[1]);
            return place(weight, () -> Fp8Blocks.stored(cuda.context(), weight, scales, block[0], block[1]));
        }
        if (isPreQuantized(checkpoint)) {
            // The checkpoint's authors kept this layer in high precision (routers, heads, MTP projections): so do we.
            return place(weight, () -> backend.denseWeight(weight));
        }
        return place(weight, () -> Fp8Blocks.quantize(cuda.context(), weight));
    }

    /** Runs a placement, naming the tensor when the backend or the quantization refuses it. */
    private static Weight place(CheckpointTensor tensor, Supplier<Weight> placement) {
        try {
            return placement.get();
        } catch (IllegalArgumentException e) {
            throw new InvalidCheckpointException(tensor.file(), tensor.name(), e.getMessage(), e);
        }
    }
}
