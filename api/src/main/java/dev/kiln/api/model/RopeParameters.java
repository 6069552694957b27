package dev.kiln.api.model;

import java.util.Map;

/**
 * Rotary position embedding parameters, normalised from both configuration styles.
 *
 * @param type   {@code default}, {@code llama3}, {@code yarn}, {@code linear}, ...
 * @param theta  the base frequency {@code rope_theta}
 * @param params the scaling object as written (factor, low/high frequency factors, original context, ...)
 * @param config the configuration it came from, for error messages
 */
public record RopeParameters(String type, double theta, Map<String, Object> params, ModelConfig config) {
    /** A required real parameter of the scaling object. */
    public double getDouble(String name) {
        Object v = params.get(name);
        if (v instanceof Number n) return n.doubleValue();
        throw config.invalid("rope_scaling." + name, v == null ? "is missing" : "expected a number, found " + v);
    }

    /** An optional real parameter of the scaling object. */
    public double getDouble(String name, double fallback) {
        return params.containsKey(name) ? getDouble(name) : fallback;
    }
}
