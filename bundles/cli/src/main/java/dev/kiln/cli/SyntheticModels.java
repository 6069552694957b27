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
    R1_DISTILL_LLAMA_8B("r1-distill-llama-8b", llama8b()),
    DEEPSEEK_V2_LITE("deepseek-v2-lite", deepseekV2LiteChat());

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

    /**
     * This configuration with some fields replaced: the same layout at other sizes, e.g. small enough to write and
     * load in a test.
     */
    Map<String, Object> configWith(Map<String, ?> replacements) {
        for (String field : replacements.keySet()) {
            if (!config.containsKey(field)) throw new IllegalArgumentException(id + " has no field " + field);
        }
        Map<String, Object> c = new LinkedHashMap<>(config);
        c.putAll(replacements);
        return c;
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

    /**
     * DeepSeek-V2-Lite-Chat's {@code config.json} as the hub has it, less {@code auto_map}: that names the remote
     * modelling code of the hub repository, which a synthetic checkpoint does not carry.
     */
    private static Map<String, Object> deepseekV2LiteChat() {
        Map<String, Object> c = new LinkedHashMap<>();
        c.put("architectures", List.of("DeepseekV2ForCausalLM"));
        c.put("attention_bias", false);
        c.put("attention_dropout", 0.0);
        c.put("aux_loss_alpha", 0.001);
        c.put("bos_token_id", 100000);
        c.put("eos_token_id", 100001);
        c.put("first_k_dense_replace", 1);
        c.put("hidden_act", "silu");
        c.put("hidden_size", 2048);
        c.put("initializer_range", 0.02);
        c.put("intermediate_size", 10944);
        c.put("kv_lora_rank", 512);
        c.put("max_position_embeddings", 163840);
        c.put("model_type", "deepseek_v2");
        c.put("moe_intermediate_size", 1408);
        c.put("moe_layer_freq", 1);
        c.put("n_group", 1);
        c.put("n_routed_experts", 64);
        c.put("n_shared_experts", 2);
        c.put("norm_topk_prob", false);
        c.put("num_attention_heads", 16);
        c.put("num_experts_per_tok", 6);
        c.put("num_hidden_layers", 27);
        c.put("num_key_value_heads", 16);
        c.put("pretraining_tp", 1);
        c.put("q_lora_rank", null);
        c.put("qk_nope_head_dim", 128);
        c.put("qk_rope_head_dim", 64);
        c.put("rms_norm_eps", 1e-6);
        Map<String, Object> yarn = new LinkedHashMap<>();
        yarn.put("beta_fast", 32);
        yarn.put("beta_slow", 1);
        yarn.put("factor", 40);
        yarn.put("mscale", 0.707);
        yarn.put("mscale_all_dim", 0.707);
        yarn.put("original_max_position_embeddings", 4096);
        yarn.put("type", "yarn");
        c.put("rope_scaling", yarn);
        c.put("rope_theta", 10000);
        c.put("routed_scaling_factor", 1.0);
        c.put("scoring_func", "softmax");
        c.put("seq_aux", true);
        c.put("tie_word_embeddings", false);
        c.put("topk_group", 1);
        c.put("topk_method", "greedy");
        c.put("torch_dtype", "bfloat16");
        c.put("use_cache", true);
        c.put("v_head_dim", 128);
        c.put("vocab_size", 102400);
        return c;
    }

    /** Tensor names and shapes of this model on the hub. */
    Map<String, long[]> tensorShapes() {
        return tensorShapes(config);
    }

    /** Tensor names and shapes of the hub layout that a configuration of one of these models describes. */
    static Map<String, long[]> tensorShapes(Map<String, Object> config) {
        return "deepseek_v2".equals(config.get("model_type")) ? deepseekV2Shapes(config) : llamaShapes(config);
    }

    private static int intValue(Map<String, Object> config, String key) {
        return ((Number) config.get(key)).intValue();
    }

    /** The Llama-family layout (Qwen2 adds q/k/v biases). */
    private static Map<String, long[]> llamaShapes(Map<String, Object> config) {
        int hidden = intValue(config, "hidden_size");
        int inter = intValue(config, "intermediate_size");
        int heads = intValue(config, "num_attention_heads");
        int kv = intValue(config, "num_key_value_heads");
        int vocab = intValue(config, "vocab_size");
        int headDim = hidden / heads;
        boolean bias = "qwen2".equals(config.get("model_type"));
        Map<String, long[]> shapes = new LinkedHashMap<>();
        shapes.put("model.embed_tokens.weight", new long[] {vocab, hidden});
        for (int l = 0; l < intValue(config, "num_hidden_layers"); l++) {
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

    /**
     * DeepSeek-V2's layout with the query projected directly ({@code q_lora_rank} null, as in V2-Lite): multi-head
     * latent attention, dense MLPs below {@code first_k_dense_replace}, then every {@code moe_layer_freq}-th layer a
     * router, one key per routed expert and the shared experts as one MLP of their summed width.
     */
    private static Map<String, long[]> deepseekV2Shapes(Map<String, Object> config) {
        if (config.get("q_lora_rank") != null) {
            throw new IllegalArgumentException("only the directly projected query (q_lora_rank null) is synthesized");
        }
        int hidden = intValue(config, "hidden_size");
        int heads = intValue(config, "num_attention_heads");
        int vocab = intValue(config, "vocab_size");
        int latent = intValue(config, "kv_lora_rank");
        int nope = intValue(config, "qk_nope_head_dim");
        int rope = intValue(config, "qk_rope_head_dim");
        int value = intValue(config, "v_head_dim");
        int experts = intValue(config, "n_routed_experts");
        int expertWidth = intValue(config, "moe_intermediate_size");
        int sharedWidth = intValue(config, "n_shared_experts") * expertWidth;
        int firstMoe = intValue(config, "first_k_dense_replace");
        int moeFrequency = intValue(config, "moe_layer_freq");
        Map<String, long[]> shapes = new LinkedHashMap<>();
        shapes.put("model.embed_tokens.weight", new long[] {vocab, hidden});
        for (int l = 0; l < intValue(config, "num_hidden_layers"); l++) {
            String p = "model.layers." + l + ".";
            shapes.put(p + "input_layernorm.weight", new long[] {hidden});
            shapes.put(p + "self_attn.q_proj.weight", new long[] {(long) heads * (nope + rope), hidden});
            shapes.put(p + "self_attn.kv_a_proj_with_mqa.weight", new long[] {latent + rope, hidden});
            shapes.put(p + "self_attn.kv_a_layernorm.weight", new long[] {latent});
            shapes.put(p + "self_attn.kv_b_proj.weight", new long[] {(long) heads * (nope + value), latent});
            shapes.put(p + "self_attn.o_proj.weight", new long[] {hidden, (long) heads * value});
            shapes.put(p + "post_attention_layernorm.weight", new long[] {hidden});
            if (experts > 0 && l >= firstMoe && l % moeFrequency == 0) {
                shapes.put(p + "mlp.gate.weight", new long[] {experts, hidden});
                for (int e = 0; e < experts; e++) mlpShapes(shapes, p + "mlp.experts." + e + ".", hidden, expertWidth);
                if (sharedWidth > 0) mlpShapes(shapes, p + "mlp.shared_experts.", hidden, sharedWidth);
            } else {
                mlpShapes(shapes, p + "mlp.", hidden, intValue(config, "intermediate_size"));
            }
        }
        shapes.put("model.norm.weight", new long[] {hidden});
        shapes.put("lm_head.weight", new long[] {vocab, hidden});
        return shapes;
    }

    private static void mlpShapes(Map<String, long[]> shapes, String prefix, int hidden, int width) {
        shapes.put(prefix + "gate_proj.weight", new long[] {width, hidden});
        shapes.put(prefix + "up_proj.weight", new long[] {width, hidden});
        shapes.put(prefix + "down_proj.weight", new long[] {hidden, width});
    }
}
