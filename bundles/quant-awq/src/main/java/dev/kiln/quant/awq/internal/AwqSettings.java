package dev.kiln.quant.awq.internal;

import dev.kiln.api.model.ModelConfig;
import java.util.Locale;
import java.util.Map;

/**
 * What an AWQ checkpoint's {@code quantization_config} says, checked against what Kiln reads: 4-bit codes with
 * zero points in AutoAWQ's GEMM packing. Both spellings seen in the wild are accepted: Hugging Face's
 * ({@code bits}, {@code group_size}) and AutoAWQ's own ({@code w_bit}, {@code q_group_size}).
 *
 * @param groupSize input columns per scale and zero point; {@code -1} means a whole row, as in AutoAWQ
 */
public record AwqSettings(int groupSize) {
    /** Whether the configuration describes an AWQ checkpoint ({@code "quant_method": "awq"}). */
    public static boolean isAwq(ModelConfig config) {
        return config.getObject("quantization_config").map(q -> "awq".equals(q.get("quant_method"))).orElse(false);
    }

    /**
     * Reads and checks the configuration.
     *
     * @throws dev.kiln.api.checkpoint.InvalidCheckpointException naming the field that is missing or unsupported
     */
    public static AwqSettings read(ModelConfig config) {
        Map<String, Object> q = config.getObject("quantization_config").orElseThrow(() -> config.invalid(
                "quantization_config", "is missing: the checkpoint stores AWQ weights (qweight) without their settings"));
        int bits = integer(config, q, "bits", "w_bit", 4);
        if (bits != 4) throw config.invalid("quantization_config.bits", bits + "-bit AWQ is not supported (only 4-bit)");
        Object version = q.getOrDefault("version", "gemm");
        if (!"gemm".equals(String.valueOf(version).toLowerCase(Locale.ROOT))) {
            throw config.invalid("quantization_config.version", "'" + version + "' packing is not supported (only"
                    + " AutoAWQ's gemm packing; gemv, gemv_fast, marlin and exllama lay codes out differently)");
        }
        Object zeroPoint = q.getOrDefault("zero_point", Boolean.TRUE);
        if (!Boolean.TRUE.equals(zeroPoint)) {
            throw config.invalid("quantization_config.zero_point", "is " + zeroPoint + ": AWQ's gemm packing stores zero points");
        }
        int groupSize = integer(config, q, "group_size", "q_group_size", 128);
        if (groupSize < 1 && groupSize != -1) {
            throw config.invalid("quantization_config.group_size", "must be positive or -1, found " + groupSize);
        }
        return new AwqSettings(groupSize);
    }

    /** The group size for a layer of {@code columns} input features. */
    public int groupSizeFor(int columns) {
        return groupSize == -1 ? columns : groupSize;
    }

    private static int integer(ModelConfig config, Map<String, Object> q, String name, String alternative, int fallback) {
        Object v = q.containsKey(name) ? q.get(name) : q.get(alternative);
        if (v == null) return fallback;
        if (v instanceof Number n && n.doubleValue() == Math.rint(n.doubleValue())) return n.intValue();
        throw config.invalid("quantization_config." + (q.containsKey(name) ? name : alternative), "expected an integer, found " + v);
    }
}
