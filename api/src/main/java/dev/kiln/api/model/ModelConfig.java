package dev.kiln.api.model;

import dev.kiln.api.checkpoint.InvalidCheckpointException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A model's {@code config.json} as parsed JSON (objects as {@link Map}, arrays as {@link List}, numbers as
 * {@link Number}), with typed accessors that refuse a missing or mistyped field by naming the file and the field.
 *
 * <p>Accessors for the fields every decoder-only transformer has are provided here; architecture-specific fields
 * (MLA ranks, MoE routing) are read by the architecture through the generic accessors.
 */
public final class ModelConfig {
    private final Map<String, Object> json;
    private final Path source;

    /**
     * @param json   the parsed JSON object
     * @param source the file it was read from, used in error messages
     */
    public ModelConfig(Map<String, Object> json, Path source) {
        this.json = Map.copyOf(stripNulls(json));
        this.source = source;
    }

    private static Map<String, Object> stripNulls(Map<String, Object> m) {
        var out = new java.util.LinkedHashMap<String, Object>();
        m.forEach((k, v) -> {
            if (v != null) out.put(k, v);
        });
        return out;
    }

    /** The file the configuration was read from. */
    public Path source() {
        return source;
    }

    /** The raw JSON object (null-valued fields removed). */
    public Map<String, Object> json() {
        return json;
    }

    /** The field's value, if present and not null. */
    public Optional<Object> get(String field) {
        return Optional.ofNullable(json.get(field));
    }

    /** Whether the field is present and not null. */
    public boolean has(String field) {
        return json.containsKey(field);
    }

    /** A required integer field. */
    public int getInt(String field) {
        return toInt(field, require(field));
    }

    /** An optional integer field. */
    public int getInt(String field, int fallback) {
        Object v = json.get(field);
        return v == null ? fallback : toInt(field, v);
    }

    /** A required real field. */
    public double getDouble(String field) {
        return toNumber(field, require(field)).doubleValue();
    }

    /** An optional real field. */
    public double getDouble(String field, double fallback) {
        Object v = json.get(field);
        return v == null ? fallback : toNumber(field, v).doubleValue();
    }

    /** An optional boolean field. */
    public boolean getBoolean(String field, boolean fallback) {
        Object v = json.get(field);
        if (v == null) return fallback;
        if (v instanceof Boolean b) return b;
        throw invalid(field, "expected true or false, found " + v);
    }

    /** An optional string field. */
    public Optional<String> getString(String field) {
        Object v = json.get(field);
        if (v == null) return Optional.empty();
        if (v instanceof String s) return Optional.of(s);
        throw invalid(field, "expected a string, found " + v);
    }

    /** An optional object field. */
    @SuppressWarnings("unchecked")
    public Optional<Map<String, Object>> getObject(String field) {
        Object v = json.get(field);
        if (v == null) return Optional.empty();
        if (v instanceof Map<?, ?> m) return Optional.of((Map<String, Object>) m);
        throw invalid(field, "expected an object, found " + v);
    }

    /** {@code model_type}, e.g. {@code qwen2}, {@code llama}, {@code deepseek_v3}. */
    public String modelType() {
        return getString("model_type").orElseThrow(() -> invalid("model_type", "is missing"));
    }

    /** {@code architectures}, e.g. {@code [Qwen2ForCausalLM]}; empty when absent. */
    public List<String> architectures() {
        Object v = json.get("architectures");
        if (v == null) return List.of();
        if (v instanceof List<?> l) return l.stream().map(String::valueOf).toList();
        throw invalid("architectures", "expected a list of names, found " + v);
    }

    /** {@code hidden_size}. */
    public int hiddenSize() {
        return positive("hidden_size");
    }

    /** {@code num_hidden_layers}. */
    public int numLayers() {
        return positive("num_hidden_layers");
    }

    /** {@code num_attention_heads}. */
    public int numHeads() {
        return positive("num_attention_heads");
    }

    /** {@code num_key_value_heads}, defaulting to the number of attention heads (plain multi-head attention). */
    public int numKeyValueHeads() {
        int kv = getInt("num_key_value_heads", numHeads());
        if (kv <= 0 || numHeads() % kv != 0) {
            throw invalid("num_key_value_heads", kv + " does not divide num_attention_heads " + numHeads());
        }
        return kv;
    }

    /** {@code head_dim}, defaulting to {@code hidden_size / num_attention_heads}. */
    public int headDim() {
        return has("head_dim") ? positive("head_dim") : hiddenSize() / numHeads();
    }

    /** {@code vocab_size}. */
    public int vocabSize() {
        return positive("vocab_size");
    }

    /** {@code intermediate_size}. */
    public int intermediateSize() {
        return positive("intermediate_size");
    }

    /** {@code rms_norm_eps}, defaulting to 1e-6. */
    public double rmsNormEps() {
        return getDouble("rms_norm_eps", 1e-6);
    }

    /** {@code tie_word_embeddings}: whether the output projection is the embedding table. */
    public boolean tieWordEmbeddings() {
        return getBoolean("tie_word_embeddings", false);
    }

    /** {@code max_position_embeddings}, defaulting to 4096. */
    public int maxPositionEmbeddings() {
        return getInt("max_position_embeddings", 4096);
    }

    /**
     * Rotary embedding parameters in either style found on the hub: {@code rope_theta} with a {@code rope_scaling}
     * object (most checkpoints), or transformers 5's {@code rope_parameters} object holding both.
     */
    public RopeParameters rope() {
        Map<String, Object> params = getObject("rope_parameters").or(() -> getObject("rope_scaling")).orElse(Map.of());
        double theta = has("rope_theta") ? getDouble("rope_theta")
                : params.containsKey("rope_theta") ? toNumber("rope_parameters.rope_theta", params.get("rope_theta")).doubleValue()
                : 10000.0;
        Object type = params.getOrDefault("rope_type", params.getOrDefault("type", "default"));
        return new RopeParameters(String.valueOf(type), theta, params, this);
    }

    private int positive(String field) {
        int v = getInt(field);
        if (v <= 0) throw invalid(field, "must be positive, found " + v);
        return v;
    }

    private Object require(String field) {
        Object v = json.get(field);
        if (v == null) throw invalid(field, "is missing");
        return v;
    }

    private Number toNumber(String field, Object v) {
        if (v instanceof Number n) return n;
        throw invalid(field, "expected a number, found " + v);
    }

    private int toInt(String field, Object v) {
        double d = toNumber(field, v).doubleValue();
        if (d != Math.rint(d) || d > Integer.MAX_VALUE || d < Integer.MIN_VALUE) {
            throw invalid(field, "expected an integer, found " + v);
        }
        return (int) d;
    }

    /** An exception naming this configuration file and the field. */
    public InvalidCheckpointException invalid(String field, String reason) {
        return new InvalidCheckpointException(source, field, reason);
    }

    @Override
    public String toString() {
        return "ModelConfig[" + source + "]";
    }
}
