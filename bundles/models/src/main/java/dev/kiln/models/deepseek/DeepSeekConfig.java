package dev.kiln.models.deepseek;

import dev.kiln.api.backend.ExpertRouting;
import dev.kiln.api.backend.RotaryEmbedding;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.api.model.RopeParameters;
import dev.kiln.models.RotaryFrequencies;

/**
 * The dimensions and options of a DeepSeek-V2/V3 decoder, read from {@code config.json} and checked once.
 *
 * @param architecture        {@code deepseek_v2} or {@code deepseek_v3}
 * @param hiddenSize          width of the residual stream
 * @param layers              decoder layers of the main model (the MTP modules come after them)
 * @param heads               attention heads
 * @param vocabSize           rows of the embedding table and of the output projection
 * @param rmsNormEps          epsilon of every RMSNorm
 * @param qLoraRank           width of the compressed query ({@code q_a_proj}), or 0 when queries are projected
 *                            directly ({@code q_proj}, DeepSeek-V2-Lite)
 * @param kvLoraRank          width of the compressed key/value latent, the part of the cache entry values are read from
 * @param nopeHeadDim         per-head query/key elements without position ({@code qk_nope_head_dim})
 * @param ropeHeadDim         per-head query/key elements rotated by position, shared by all heads on the key side
 * @param valueHeadDim        per-head value elements
 * @param attentionBias       whether q_a/q/kv_a/o projections have biases
 * @param intermediateSize    width of the dense MLP of the first layers
 * @param ffn                 the mixture-of-experts layers' shape and routing
 * @param mtpModules          multi-token prediction modules stored after the main layers
 * @param rope                rotary frequencies of the rope part, after YaRN
 * @param ropeLayout          which elements of the rope part pair up (interleaved in the original weights)
 * @param attentionScale      the softmax scale: {@code 1/sqrt(nope + rope)}, times YaRN's mscale squared
 */
record DeepSeekConfig(String architecture, int hiddenSize, int layers, int heads, int vocabSize, float rmsNormEps,
                      int qLoraRank, int kvLoraRank, int nopeHeadDim, int ropeHeadDim, int valueHeadDim,
                      boolean attentionBias, int intermediateSize, Experts ffn, int mtpModules,
                      RotaryFrequencies rope, RotaryEmbedding.Layout ropeLayout, float attentionScale) {

    /**
     * The mixture-of-experts layers.
     *
     * @param routed             routed experts (0: every layer is dense)
     * @param shared             shared experts, computed for every token as one MLP of {@code shared × width}
     * @param perToken           experts each token is routed to
     * @param width              intermediate width of one expert ({@code moe_intermediate_size})
     * @param firstMoeLayer      layers below it are dense ({@code first_k_dense_replace})
     * @param layerFrequency     a layer at or above {@link #firstMoeLayer} is MoE when its index is a multiple of it
     * @param scoring            how router logits become scores
     * @param selection          which experts are eligible
     * @param groups             expert groups ({@code n_group})
     * @param groupsPerToken     groups a token may pick experts from ({@code topk_group})
     * @param normalize          whether the chosen experts' weights are renormalised to sum to 1 ({@code norm_topk_prob})
     * @param scalingFactor      factor on every routed expert's weight ({@code routed_scaling_factor})
     */
    record Experts(int routed, int shared, int perToken, int width, int firstMoeLayer, int layerFrequency,
                   ExpertRouting.Scoring scoring, ExpertRouting.Selection selection, int groups, int groupsPerToken,
                   boolean normalize, float scalingFactor) {
        /** Whether decoder layer {@code layer} (an MTP module's included) is a mixture of experts. */
        boolean isMoe(int layer) {
            return routed > 0 && layer >= firstMoeLayer && layer % layerFrequency == 0;
        }
    }

    /** Reads a {@code deepseek_v2} (DeepSeek-V2, V2-Lite, V2.5) or {@code deepseek_v3} (V3, R1) configuration. */
    static DeepSeekConfig read(ModelConfig config) {
        String architecture = config.modelType();
        if (!architecture.equals("deepseek_v2") && !architecture.equals("deepseek_v3")) {
            throw config.invalid("model_type", "'" + architecture + "' is not a DeepSeek-V2/V3 model");
        }
        boolean v3 = architecture.equals("deepseek_v3");
        String activation = config.getString("hidden_act").orElse("silu");
        if (!activation.equals("silu")) {
            throw config.invalid("hidden_act", "'" + activation + "' is not supported (DeepSeek uses silu)");
        }
        int heads = config.numHeads();
        int qLoraRank = config.getInt("q_lora_rank", 0);
        int kvLoraRank = positive(config, "kv_lora_rank");
        int nope = positive(config, "qk_nope_head_dim");
        int ropeDim = positive(config, "qk_rope_head_dim");
        int value = positive(config, "v_head_dim");
        if (qLoraRank < 0) throw config.invalid("q_lora_rank", "must not be negative, found " + qLoraRank);

        RopeParameters ropeParameters = config.rope();
        RotaryFrequencies rope = RotaryFrequencies.of(ropeParameters, ropeDim);
        RotaryEmbedding.Layout layout = config.getBoolean("rope_interleave", true)
                ? RotaryEmbedding.Layout.INTERLEAVED : RotaryEmbedding.Layout.HALVES;
        double scale = 1.0 / Math.sqrt(nope + ropeDim);
        if (ropeParameters.type().equals("yarn")) {
            // DeepSeek's YaRN also sharpens the softmax: the scale takes mscale(factor, mscale_all_dim) squared.
            double mscaleAllDim = ropeParameters.getDouble("mscale_all_dim", 0);
            if (mscaleAllDim != 0) {
                double m = RotaryFrequencies.yarnMscale(ropeParameters.getDouble("factor"), mscaleAllDim);
                scale *= m * m;
            }
        }
        return new DeepSeekConfig(architecture, config.hiddenSize(), config.numLayers(), heads, config.vocabSize(),
                (float) config.rmsNormEps(), qLoraRank, kvLoraRank, nope, ropeDim, value,
                config.getBoolean("attention_bias", false), config.intermediateSize(), experts(config, v3),
                config.getInt("num_nextn_predict_layers", 0), rope, layout, (float) scale);
    }

    private static Experts experts(ModelConfig config, boolean v3) {
        int routed = config.getInt("n_routed_experts", 0);
        if (routed <= 0) {
            return new Experts(0, 0, 0, 0, Integer.MAX_VALUE, 1, ExpertRouting.Scoring.SOFTMAX,
                    ExpertRouting.Selection.GREEDY, 1, 1, false, 1f);
        }
        String scoringName = config.getString("scoring_func").orElse(v3 ? "sigmoid" : "softmax");
        ExpertRouting.Scoring scoring = switch (scoringName) {
            case "softmax" -> ExpertRouting.Scoring.SOFTMAX;
            case "sigmoid" -> ExpertRouting.Scoring.SIGMOID;
            default -> throw config.invalid("scoring_func", "'" + scoringName + "' is not supported (softmax, sigmoid)");
        };
        String method = config.getString("topk_method").orElse(v3 ? "noaux_tc" : "greedy");
        ExpertRouting.Selection selection = switch (method) {
            case "greedy" -> ExpertRouting.Selection.GREEDY;
            case "group_limited_greedy" -> ExpertRouting.Selection.GROUP_LIMITED_GREEDY;
            case "noaux_tc" -> ExpertRouting.Selection.NOAUX_TC;
            default -> throw config.invalid("topk_method", "'" + method
                    + "' is not supported (greedy, group_limited_greedy, noaux_tc)");
        };
        int perToken = positive(config, "num_experts_per_tok");
        int groups = config.getInt("n_group", 1);
        int groupsPerToken = config.getInt("topk_group", groups);
        if (perToken > routed) {
            throw config.invalid("num_experts_per_tok", perToken + " exceeds the " + routed + " routed experts");
        }
        if (groups < 1 || routed % groups != 0) {
            throw config.invalid("n_group", groups + " groups do not divide " + routed + " routed experts");
        }
        if (groupsPerToken < 1 || groupsPerToken > groups) {
            throw config.invalid("topk_group", groupsPerToken + " is outside 1.." + groups);
        }
        if (selection != ExpertRouting.Selection.GREEDY && groupsPerToken * (routed / groups) < perToken) {
            throw config.invalid("topk_group", groupsPerToken + " groups of " + (routed / groups)
                    + " experts cannot supply " + perToken + " experts per token");
        }
        int frequency = config.getInt("moe_layer_freq", 1);
        if (frequency < 1) throw config.invalid("moe_layer_freq", "must be positive, found " + frequency);
        return new Experts(routed, config.getInt("n_shared_experts", 0), perToken,
                positive(config, "moe_intermediate_size"), config.getInt("first_k_dense_replace", 0), frequency,
                scoring, selection, groups, groupsPerToken, config.getBoolean("norm_topk_prob", false),
                (float) config.getDouble("routed_scaling_factor", 1.0));
    }

    private static int positive(ModelConfig config, String field) {
        int v = config.getInt(field);
        if (v <= 0) throw config.invalid(field, "must be positive, found " + v);
        return v;
    }

    /** Per-head query/key width: the "nope" part then the rope part. */
    int queryHeadDim() {
        return nopeHeadDim + ropeHeadDim;
    }

    /** One token's cache entry per layer: the latent then the rope key. */
    int latentEntryDim() {
        return kvLoraRank + ropeHeadDim;
    }
}
