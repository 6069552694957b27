package dev.kiln.backend.cuda;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.backend.cuda.quant.OnLoadQuantization;
import org.osgi.service.component.annotations.Component;

/**
 * Weight-only INT8 on the CUDA backend ({@code kiln.name=weight_only_int8}, {@code kiln.backend=cuda}): every linear
 * layer of a floating-point checkpoint is quantized on load exactly as the CPU bundle does it (signed 8-bit codes, one
 * scale per output row) and uploaded once; decode steps stream a byte per weight instead of bf16's two.
 *
 * <p>Selected with {@code kiln serve --backend cuda --quantization weight_only_int8}. Enabled together with the
 * {@link CudaBackend} when a device is present.
 */
@Component(service = Quantizer.class, enabled = false,
        property = {KilnProperties.NAME + "=weight_only_int8", KilnProperties.BACKEND + "=cuda"})
public final class CudaInt8Quantizer implements Quantizer {
    /** A quantizer; it holds no state. */
    public CudaInt8Quantizer() {}

    @Override
    public String name() {
        return "weight_only_int8";
    }

    @Override
    public boolean supports(ComputeBackend backend) {
        return backend instanceof CudaBackend;
    }

    /** Never: this format is made on load; no checkpoint is read as stored INT8. */
    @Override
    public boolean isPreQuantized(Checkpoint checkpoint) {
        return false;
    }

    @Override
    public Weight load(Checkpoint checkpoint, String prefix, ComputeBackend backend) {
        if (!(backend instanceof CudaBackend cuda)) {
            throw new IllegalArgumentException("this weight_only_int8 quantizer has kernels for the CUDA backend only, not '"
                    + backend.name() + "'");
        }
        CheckpointTensor weight = checkpoint.tensor(prefix + ".weight");
        try {
            return OnLoadQuantization.int8(cuda.context(), weight);
        } catch (IllegalArgumentException e) {
            throw new InvalidCheckpointException(weight.file(), weight.name(), e.getMessage(), e);
        }
    }
}
