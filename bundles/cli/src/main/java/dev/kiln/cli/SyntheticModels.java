package dev.kiln.cli;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The configurations of the hub models Kiln benchmarks on, exactly as their {@code config.json} gives the fields
 * that fix tensor shapes and arithmetic (sizes, heads, rope, norms, vocabulary), so that a synthetic checkpoint has
 * the real model's cost per token.
 */
enum SyntheticModels {
    R1_DISTILL_QWEN_1_5B("r1-distill-qwen-1.5b", qwen2(1536, 8960, 28, 12, 2, 151936, 151646, 151643, 21)),
    R1_DISTILL_QWEN_7B("r1-distill-qwen-7b", qwen2(3584, 18944, 28, 28, 4, 152064, 151646, 151643, 28)),
    R1_DISTILL_LLAMA_8B("r1-distill-llama-8b", llama8b());

    final String id;
    final Map<String, Object> config;

    SyntheticModels(String id, Map<String, Object> config) {
        this.id = id;
        this.config = config;
    }

    static SyntheticModels byId(String id) {
        for (SyntheticModels m : values()) if (m.id.equals(id)) return m;
        throw new IllegalArgumentException("unknown model '" + id + "'; choose one of "
                + java.util.Arrays.stream(values()).map(m -> m.id).toList());
    }

    private static Map<String, Object> qwen2(int hidden, int intermediate, int layers, int heads, int kvHeads, int vocab,
                                             int bos, int eos, int maxWindowLayers) {
        Map<String, Object> c = new LinkedHashMap<>();
        c.put("architectures", List.of("Qwen2ForCausalLM"));
        c.put("attention_dropout", 0.0);
        c.put("bos_token_id", bos);
        c.put("eos_token_id", eos);
        c.put("hidden_act", "silu");
        c.put("hidden_size", hidden);
        c.put("initializer_range", 0.02);
        c.put("intermediate_size", intermediate);
        c.put("max_position_embeddings", 131072);
        c.put("max_window_layers", maxWindowLayers);
        c.put("model_type", "qwen2");
        c.put("num_attention_heads", heads);
        c.put("num_hidden_layers", layers);
        c.put("num_key_value_heads", kvHeads);
        c.put("rms_norm_eps", 1e-6);
        c.put("rope_theta", 10000.0);
        c.put("sliding_window", 4096);
        c.put("tie_word_embeddings", false);
        c.put("torch_dtype", "bfloat16");
        c.put("use_cache", true);
        c.put("use_sliding_window", false);
        c.put("vocab_size", vocab);
        return c;
    }

    private static Map<String, Object> llama8b() {
        Map<String, Object> c = new LinkedHashMap<>();
        c.put("architectures", List.of("LlamaForCausalLM"));
        c.put("attention_bias", false);
        c.put("attention_dropout", 0.0);
        c.put("bos_token_id", 128000);
        c.put("eos_token_id", 128001);
        c.put("hidden_act", "silu");
        c.put("hidden_size", 4096);
        c.put("initializer_range", 0.02);
        c.put("intermediate_size", 14336);
        c.put("max_position_embeddings", 131072);
        c.put("mlp_bias", false);
        c.put("model_type", "llama");
        c.put("num_attention_heads", 32);
        c.put("num_hidden_layers", 32);
        c.put("num_key_value_heads", 8);
        c.put("pretraining_tp", 1);
        c.put("rms_norm_eps", 1e-5);
        c.put("rope_scaling", Map.of("factor", 8.0, "high_freq_factor", 4.0, "low_freq_factor", 1.0,
                "original_max_position_embeddings", 8192, "rope_type", "llama3"));
        c.put("rope_theta", 500000.0);
        c.put("tie_word_embeddings", false);
        c.put("torch_dtype", "bfloat16");
        c.put("use_cache", true);
        c.put("vocab_size", 128256);
        return c;
    }

    int intValue(String key) {
        return ((Number) config.get(key)).intValue();
    }

    /** Tensor names and shapes of the Llama-family layout on the hub (Qwen2 adds q/k/v biases). */
    Map<String, long[]> tensorShapes() {
        int hidden = intValue("hidden_size");
        int inter = intValue("intermediate_size");
        int heads = intValue("num_attention_heads");
        int kv = intValue("num_key_value_heads");
        int vocab = intValue("vocab_size");
        int headDim = hidden / heads;
        boolean bias = "qwen2".equals(config.get("model_type"));
        Map<String, long[]> shapes = new LinkedHashMap<>();
        shapes.put("model.embed_tokens.weight", new long[] {vocab, hidden});
        for (int l = 0; l < intValue("num_hidden_layers"); l++) {
            String p = "model.layers." + l + ".";
            shapes.put(p + "input_layernorm.weight", new long[] {hidden});
            shapes.put(p + "self_attn.q_proj.weight", new long[] {(long) heads * headDim, hidden});
            shapes.put(p + "self_attn.k_proj.weight", new long[] {(long) kv * headDim, hidden});
            shapes.put(p + "self_attn.v_proj.weight", new long[] {(long) kv * headDim, hidden});
            if (bias) {
                shapes.put(p + "self_attn.q_proj.bias", new long[] {(long) heads * headDim});
                shapes.put(p + "self_attn.k_proj.bias", new long[] {(long) kv * headDim});
                shapes.put(p + "self_attn.v_proj.bias", new long[] {(long) kv * headDim});
            }
            shapes.put(p + "self_attn.o_proj.weight", new long[] {hidden, (long) heads * headDim});
            shapes.put(p + "post_attention_layernorm.weight", new long[] {hidden});
            shapes.put(p + "mlp.gate_proj.weight", new long[] {inter, hidden});
            shapes.put(p + "mlp.up_proj.weight", new long[] {inter, hidden});
            shapes.put(p + "mlp.down_proj.weight", new long[] {hidden, inter});
        }
        shapes.put("model.norm.weight", new long[] {hidden});
        shapes.put("lm_head.weight", new long[] {vocab, hidden});
        return shapes;
    }
}
