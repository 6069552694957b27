package dev.kiln.quant.int8;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.quant.cpu.KernelScratch;
import dev.kiln.quant.int8.internal.ChannelQuantization;
import org.osgi.service.component.annotations.Component;

/**
 * Weight-only INT8 ({@code kiln.name=weight_only_int8}), the format PaddleNLP serves DeepSeek with as
 * {@code weight_only_int8}: every linear layer of a floating-point checkpoint is quantized on load to signed 8-bit
 * codes with one scale per output channel, halving the bytes a decode step reads (a bf16 weight takes 2 bytes per
 * element, this one 1 plus 4 per row). Activations stay f32.
 *
 * <p>Selected with {@code kiln serve --quantization weight_only_int8}. A checkpoint already quantized in another
 * format (FP8, AWQ) is refused by the engine, and a tensor that is not floating-point by this quantizer, naming it.
 */
@Component(service = Quantizer.class,
        property = {KilnProperties.NAME + "=weight_only_int8", KilnProperties.BACKEND + "=cpu"})
public final class Int8Quantizer implements Quantizer {
    /** A quantizer; it holds no state. */
    public Int8Quantizer() {}

    @Override
    public String name() {
        return "weight_only_int8";
    }

    @Override
    public boolean supports(ComputeBackend backend) {
        return backend instanceof CpuBackend;
    }

    /** Never: this format is made on load; no checkpoint is read as stored INT8. */
    @Override
    public boolean isPreQuantized(Checkpoint checkpoint) {
        return false;
    }

    @Override
    public Weight load(Checkpoint checkpoint, String prefix, ComputeBackend backend) {
        if (!(backend instanceof CpuBackend cpu)) {
            throw new IllegalArgumentException("weight_only_int8 has kernels for the CPU backend only, not '" + backend.name() + "'");
        }
        CheckpointTensor weight = checkpoint.tensor(prefix + ".weight");
        try {
            return ChannelQuantization.quantize(weight, cpu.pool(), KernelScratch.of(cpu.pool()));
        } catch (IllegalArgumentException e) {
            throw new InvalidCheckpointException(weight.file(), weight.name(), e.getMessage(), e);
        }
    }
}
