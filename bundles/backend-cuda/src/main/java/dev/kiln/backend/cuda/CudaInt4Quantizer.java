package dev.kiln.backend.cuda;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.backend.cuda.quant.OnLoadQuantization;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;

/**
 * Weight-only INT4 on the CUDA backend ({@code kiln.name=weight_only_int4}, {@code kiln.backend=cuda}): every linear
 * layer of a floating-point checkpoint is quantized on load exactly as the CPU bundle does it (4-bit codes two per
 * byte, one f32 scale per group of {@code group-size} columns) and uploaded once; decode steps stream about a quarter
 * of bf16's bytes.
 *
 * <p>Selected with {@code kiln serve --backend cuda --quantization weight_only_int4}. The group size (64 or 128,
 * default 128) comes from the CPU format's Config Admin PID {@value #PID}, property {@code group-size}, so one setting
 * serves both backends. Enabled together with the {@link CudaBackend} when a device is present.
 */
@Component(service = Quantizer.class, enabled = false, configurationPid = CudaInt4Quantizer.PID,
        property = {KilnProperties.NAME + "=weight_only_int4", KilnProperties.BACKEND + "=cuda"})
public final class CudaInt4Quantizer implements Quantizer {
    /** Config Admin PID of the format, shared with the CPU bundle's quantizer. */
    public static final String PID = "dev.kiln.quant.int4";
    /** The group size used without configuration. */
    public static final int DEFAULT_GROUP_SIZE = 128;

    /** Configuration of the format (its metatype is the CPU bundle's). */
    public @interface Config {
        /** Columns per scale ({@code group-size}): 64 or 128. */
        int group$_$size() default DEFAULT_GROUP_SIZE;
    }

    private final int groupSize;

    /** The format with groups of {@value #DEFAULT_GROUP_SIZE} columns. */
    public CudaInt4Quantizer() {
        this(DEFAULT_GROUP_SIZE);
    }

    /**
     * The format with groups of {@code groupSize} columns.
     *
     * @throws IllegalArgumentException unless it is 64 or 128
     */
    public CudaInt4Quantizer(int groupSize) {
        if (groupSize != 64 && groupSize != 128) {
            throw new IllegalArgumentException(PID + " group-size must be 64 or 128, not " + groupSize);
        }
        this.groupSize = groupSize;
    }

    /** Declarative Services constructor: the group size comes from the configuration. */
    @Activate
    public CudaInt4Quantizer(Config config) {
        this(config.group$_$size());
    }

    /** Columns per scale. */
    public int groupSize() {
        return groupSize;
    }

    @Override
    public String name() {
        return "weight_only_int4";
    }

    @Override
    public boolean supports(ComputeBackend backend) {
        return backend instanceof CudaBackend;
    }

    /** Never: this format is made on load; no checkpoint is read as stored INT4. */
    @Override
    public boolean isPreQuantized(Checkpoint checkpoint) {
        return false;
    }

    @Override
    public Weight load(Checkpoint checkpoint, String prefix, ComputeBackend backend) {
        if (!(backend instanceof CudaBackend cuda)) {
            throw new IllegalArgumentException("this weight_only_int4 quantizer has kernels for the CUDA backend only, not '"
                    + backend.name() + "'");
        }
        CheckpointTensor weight = checkpoint.tensor(prefix + ".weight");
        try {
            return OnLoadQuantization.int4(cuda.context(), weight, groupSize);
        } catch (IllegalArgumentException e) {
            throw new InvalidCheckpointException(weight.file(), weight.name(), e.getMessage(), e);
        }
    }
}
