package dev.kiln.quant.int4;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.quant.cpu.Int4GroupWeight;
import dev.kiln.quant.cpu.KernelScratch;
import dev.kiln.quant.int4.internal.GroupQuantization;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;
import org.osgi.service.metatype.annotations.Option;

/**
 * Weight-only INT4 ({@code kiln.name=weight_only_int4}), the 4-bit format PaddleNLP serves DeepSeek with as
 * {@code weight_only_int4}: every linear layer of a floating-point checkpoint is quantized on load to signed 4-bit
 * codes, two per byte, with one f32 scale per group of {@code group-size} consecutive input columns. A decode step
 * reads about a quarter of the bytes of bf16 (plus 4 bytes per group). Activations stay f32.
 *
 * <p>Selected with {@code kiln serve --quantization weight_only_int4}; the group size (64 or 128, default 128) comes
 * from Config Admin PID {@value #PID}, property {@code group-size}. Smaller groups follow the weights more closely at
 * 1/64 more bytes per weight. Property {@code int8-activations} (default false) switches decode to the kernel that
 * rounds its activations to 8 bits per block ({@link Int4GroupWeight}).
 */
@Component(service = Quantizer.class, configurationPid = Int4Quantizer.PID,
        property = {KilnProperties.NAME + "=weight_only_int4", KilnProperties.BACKEND + "=cpu"})
@Designate(ocd = Int4Quantizer.Config.class)
public final class Int4Quantizer implements Quantizer {
    /** Config Admin PID of the format. */
    public static final String PID = "dev.kiln.quant.int4";
    /** The group size used without configuration. */
    public static final int DEFAULT_GROUP_SIZE = 128;

    /** Configuration of the format. */
    @ObjectClassDefinition(name = "Kiln weight-only INT4", description = "Group-wise INT4 weights quantized on load")
    public @interface Config {
        /** Columns per scale ({@code group-size}). */
        @AttributeDefinition(name = "Group size", description = "Input columns sharing one scale: 64 or 128",
                options = {@Option(label = "64", value = "64"), @Option(label = "128", value = "128")})
        int group$_$size() default DEFAULT_GROUP_SIZE;

        /**
         * Whether decode rounds its activations to 8 bits per block of 128 columns for the faster kernel
         * ({@code int8-activations}).
         */
        @AttributeDefinition(name = "8-bit activations in decode",
                description = "Decode steps of one sequence round the activations to 8 bits per block of 128 columns"
                        + " and multiply in 16-bit integers: about 5% more tokens per second on two cores, at the cost"
                        + " of that rounding")
        boolean int8$_$activations() default false;
    }

    private final int groupSize;
    private final boolean int8Activations;

    /** The format with groups of {@value #DEFAULT_GROUP_SIZE} columns. */
    public Int4Quantizer() {
        this(DEFAULT_GROUP_SIZE);
    }

    /**
     * The format with groups of {@code groupSize} columns.
     *
     * @throws IllegalArgumentException unless it is 64 or 128
     */
    public Int4Quantizer(int groupSize) {
        this(groupSize, false);
    }

    /**
     * The format with groups of {@code groupSize} columns, its decode kernel with f32 activations or with
     * activations rounded to 8 bits ({@link Int4GroupWeight#int8Activations()}).
     *
     * @throws IllegalArgumentException unless the group size is 64 or 128
     */
    public Int4Quantizer(int groupSize, boolean int8Activations) {
        if (groupSize != 64 && groupSize != 128) {
            throw new IllegalArgumentException(PID + " group-size must be 64 or 128, not " + groupSize);
        }
        this.groupSize = groupSize;
        this.int8Activations = int8Activations;
    }

    /** Declarative Services constructor: the group size and the activations come from the configuration. */
    @Activate
    public Int4Quantizer(Config config) {
        this(config.group$_$size(), config.int8$_$activations());
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
        return backend instanceof CpuBackend;
    }

    /** Never: this format is made on load; no checkpoint is read as stored INT4. */
    @Override
    public boolean isPreQuantized(Checkpoint checkpoint) {
        return false;
    }

    @Override
    public Weight load(Checkpoint checkpoint, String prefix, ComputeBackend backend) {
        if (!(backend instanceof CpuBackend cpu)) {
            throw new IllegalArgumentException("weight_only_int4 has kernels for the CPU backend only, not '" + backend.name() + "'");
        }
        CheckpointTensor weight = checkpoint.tensor(prefix + ".weight");
        try {
            return GroupQuantization.quantize(weight, groupSize, int8Activations, cpu.pool(), KernelScratch.of(cpu.pool()));
        } catch (IllegalArgumentException e) {
            throw new InvalidCheckpointException(weight.file(), weight.name(), e.getMessage(), e);
        }
    }
}
