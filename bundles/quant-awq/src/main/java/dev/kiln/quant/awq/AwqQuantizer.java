package dev.kiln.quant.awq;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.quant.awq.internal.AwqSettings;
import dev.kiln.quant.awq.internal.AwqUnpacking;
import dev.kiln.quant.cpu.KernelScratch;
import java.util.Optional;
import org.osgi.service.component.annotations.Component;

/**
 * AWQ ({@code kiln.name=awq}, vLLM's {@code --quantization awq}): reads checkpoints that AutoAWQ quantized
 * (activation-aware 4-bit weights with a zero point and an fp16 scale per group of input columns), as their
 * {@code quantization_config} describes them ({@code "quant_method": "awq"}, {@code bits} 4, {@code group_size},
 * {@code zero_point} true, {@code version} gemm). Each layer's {@code qweight}, {@code qzeros} and {@code scales}
 * are unpacked once into the shared group-wise INT4 weight, whose kernels subtract the zero points per group.
 * Layers the checkpoint keeps in floating point ({@code modules_to_not_convert}, the output head) stay as stored.
 *
 * <p>AWQ needs calibration data, so this quantizer does not convert floating-point checkpoints on load: it refuses
 * them and names {@code weight_only_int4}, which does.
 */
@Component(service = Quantizer.class, property = {KilnProperties.NAME + "=awq", KilnProperties.BACKEND + "=cpu"})
public final class AwqQuantizer implements Quantizer {
    /** A quantizer; it holds no state. */
    public AwqQuantizer() {}

    @Override
    public String name() {
        return "awq";
    }

    @Override
    public boolean supports(ComputeBackend backend) {
        return backend instanceof CpuBackend;
    }

    @Override
    public boolean isPreQuantized(Checkpoint checkpoint) {
        return AwqSettings.isAwq(checkpoint.config());
    }

    @Override
    public Weight load(Checkpoint checkpoint, String prefix, ComputeBackend backend) {
        if (!(backend instanceof CpuBackend cpu)) {
            throw new IllegalArgumentException("awq has kernels for the CPU backend only, not '" + backend.name() + "'");
        }
        if (!isPreQuantized(checkpoint)) {
            throw checkpoint.config().invalid("quantization_config", "the checkpoint is not AWQ-quantized (no"
                    + " \"quant_method\": \"awq\"); awq reads AutoAWQ checkpoints and cannot quantize on load without"
                    + " calibration data: use --quantization weight_only_int4 for 4-bit weights made on load");
        }
        Optional<CheckpointTensor> qweight = checkpoint.find(prefix + ".qweight");
        if (qweight.isEmpty()) {
            // A layer AutoAWQ left in floating point (modules_to_not_convert).
            CheckpointTensor weight = checkpoint.find(prefix + ".weight").orElseThrow(() -> new InvalidCheckpointException(
                    checkpoint.location(), prefix + ".qweight", "is missing, and so is " + prefix + ".weight"));
            try {
                return backend.denseWeight(weight);
            } catch (IllegalArgumentException e) {
                throw new InvalidCheckpointException(weight.file(), weight.name(), e.getMessage(), e);
            }
        }
        AwqSettings settings = AwqSettings.read(checkpoint.config());
        CheckpointTensor codes = qweight.get();
        try {
            return AwqUnpacking.unpack(codes, checkpoint.tensor(prefix + ".qzeros"), checkpoint.tensor(prefix + ".scales"),
                    settings, cpu.pool(), KernelScratch.of(cpu.pool()));
        } catch (IllegalArgumentException e) {
            throw new InvalidCheckpointException(codes.file(), prefix, e.getMessage(), e);
        }
    }
}
