package dev.kiln.quant.testing;

import dev.kiln.api.model.ModelConfig;
import dev.kiln.api.model.RopeParameters;
import java.util.Arrays;
import java.util.Map;

/**
 * An independent forward pass in float64 of the architectures Kiln serves (Llama/Qwen2 with GQA, q/k/v biases and
 * llama3 RoPE; DeepSeek-V2/V3 with MLA, interleaved rope part, YaRN, DeepSeekMoE), written after the fixtures'
 * numpy specification ({@code fixtures/spec}) and sharing no code with Kiln's models. Its weights come from a
 * {@link Tensors} source, so a test can substitute the dequantized values of a quantized layer and get the logits the
 * quantized model should produce, computed without any f32 rounding.
 *
 * <p>It recomputes attention over the whole prefix for every position: meant for sequences of a few hundred tokens.
 */
public final class Float64Forward {
    private final ModelConfig config;
    private final Tensors weights;
    private final String headTensor;

    /** Named tensors as float64, row-major. */
    public interface Tensors {
        /** The tensor's values; throws when it is absent. */
        double[] get(String name);

        /** Whether the tensor exists. */
        boolean has(String name);
    }

    /** A forward of the model the configuration describes, reading weights from {@code weights}. */
    public Float64Forward(ModelConfig config, Tensors weights) {
        this(config, weights, null);
    }

    /**
     * Same, with the output projection read from {@code headTensor} rather than from {@code lm_head.weight} or,
     * when tied, the embedding table: for a model whose tied head is stored differently from its embedding lookup
     * (quantized on load while the table stays as stored).
     */
    public Float64Forward(ModelConfig config, Tensors weights, String headTensor) {
        this.config = config;
        this.weights = weights;
        this.headTensor = headTensor;
    }

    /** The logits after every token of the sequence, {@code [tokens.length][vocab]}. */
    public double[][] logits(int[] tokens) {
        return switch (config.modelType()) {
            case "llama", "qwen2" -> dense(tokens);
            case "deepseek_v2", "deepseek_v3" -> deepseek(tokens);
            default -> throw new IllegalArgumentException("no float64 forward for model_type " + config.modelType());
        };
    }

    // ---------------------------------------------------------------- Llama / Qwen2

    private double[][] dense(int[] tokens) {
        int hidden = config.hiddenSize();
        int heads = config.numHeads();
        int kvHeads = config.numKeyValueHeads();
        int d = config.headDim();
        double eps = config.rmsNormEps();
        double[][] x = embed(tokens, hidden);
        double[] inverse = llama3(ropeFrequencies(config.rope().theta(), d), config.rope());
        double[][] cos = angles(tokens.length, inverse, 1.0, true);
        double[][] sin = angles(tokens.length, inverse, 1.0, false);
        for (int l = 0; l < config.numLayers(); l++) {
            String p = "model.layers." + l + ".";
            double[][] h = rms(x, weights.get(p + "input_layernorm.weight"), eps);
            double[][] q = linear(h, p + "self_attn.q_proj");
            double[][] k = linear(h, p + "self_attn.k_proj");
            double[][] v = linear(h, p + "self_attn.v_proj");
            for (int t = 0; t < tokens.length; t++) {
                for (int head = 0; head < heads; head++) rotateHalves(q[t], head * d, d, cos[t], sin[t]);
                for (int head = 0; head < kvHeads; head++) rotateHalves(k[t], head * d, d, cos[t], sin[t]);
            }
            double[][] attended = new double[tokens.length][heads * d];
            int group = heads / kvHeads;
            for (int head = 0; head < heads; head++) {
                int kv = head / group;
                attend(q, head * d, k, kv * d, d, v, kv * d, d, 1.0 / Math.sqrt(d), attended, head * d);
            }
            add(x, linear(attended, p + "self_attn.o_proj"));
            h = rms(x, weights.get(p + "post_attention_layernorm.weight"), eps);
            add(x, mlp(h, p + "mlp."));
        }
        return head(x, eps, config.tieWordEmbeddings() || !weights.has("lm_head.weight")
                ? "model.embed_tokens.weight" : "lm_head.weight");
    }

    /** llama3 scaling of the inverse frequencies, when the configuration asks for it. */
    private static double[] llama3(double[] inverse, RopeParameters rope) {
        if (!rope.type().equals("llama3")) {
            if (!rope.type().equals("default")) throw new IllegalArgumentException("rope type " + rope.type());
            return inverse;
        }
        double factor = rope.getDouble("factor");
        double low = rope.getDouble("low_freq_factor");
        double high = rope.getDouble("high_freq_factor");
        double original = rope.getDouble("original_max_position_embeddings");
        double lowWavelength = original / low, highWavelength = original / high;
        double[] out = new double[inverse.length];
        for (int i = 0; i < inverse.length; i++) {
            double wavelength = 2 * Math.PI / inverse[i];
            if (wavelength < highWavelength) {
                out[i] = inverse[i];
            } else if (wavelength > lowWavelength) {
                out[i] = inverse[i] / factor;
            } else {
                double smooth = (original / wavelength - low) / (high - low);
                out[i] = (1 - smooth) * inverse[i] / factor + smooth * inverse[i];
            }
        }
        return out;
    }

    // ---------------------------------------------------------------- DeepSeek-V2 / V3

    private double[][] deepseek(int[] tokens) {
        int hidden = config.hiddenSize();
        double eps = config.rmsNormEps();
        int ropeDim = config.getInt("qk_rope_head_dim");
        RopeParameters rope = config.rope();
        double[] inverse = ropeFrequencies(rope.theta(), ropeDim);
        double magnitude = 1.0;
        double scale = 1.0 / Math.sqrt(config.getInt("qk_nope_head_dim") + ropeDim);
        if (rope.type().equals("yarn")) {
            double factor = rope.getDouble("factor");
            double original = rope.getDouble("original_max_position_embeddings");
            double fast = rope.getDouble("beta_fast", 32), slow = rope.getDouble("beta_slow", 1);
            double base = rope.theta();
            double low = Math.max(Math.floor(correctionDim(fast, ropeDim, base, original)), 0);
            double high = Math.min(Math.ceil(correctionDim(slow, ropeDim, base, original)), ropeDim - 1);
            if (low == high) high += 0.001;
            for (int i = 0; i < inverse.length; i++) {
                double ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
                double extrapolation = 1 - ramp;
                inverse[i] = inverse[i] / factor * (1 - extrapolation) + inverse[i] * extrapolation;
            }
            double mscale = rope.getDouble("mscale", 1), mscaleAllDim = rope.getDouble("mscale_all_dim", 0);
            magnitude = mscaleAllDim != 0 ? yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAllDim) : yarnMscale(factor, 1);
            if (mscaleAllDim != 0 && factor > 1) {
                double m = yarnMscale(factor, mscaleAllDim);
                scale *= m * m;
            }
        } else if (!rope.type().equals("default")) {
            throw new IllegalArgumentException("rope type " + rope.type());
        }
        double[][] cos = angles(tokens.length, inverse, magnitude, true);
        double[][] sin = angles(tokens.length, inverse, magnitude, false);
        double[][] x = embed(tokens, hidden);
        for (int l = 0; l < config.numLayers(); l++) {
            String p = "model.layers." + l + ".";
            double[][] h = rms(x, weights.get(p + "input_layernorm.weight"), eps);
            add(x, latentAttention(h, p + "self_attn.", cos, sin, scale));
            h = rms(x, weights.get(p + "post_attention_layernorm.weight"), eps);
            add(x, isMoe(l) ? moe(h, p + "mlp.") : mlp(h, p + "mlp."));
        }
        return head(x, eps, config.tieWordEmbeddings() && !weights.has("lm_head.weight")
                ? "model.embed_tokens.weight" : "lm_head.weight");
    }

    private static double correctionDim(double rotations, int dim, double base, double original) {
        return dim * Math.log(original / (rotations * 2 * Math.PI)) / (2 * Math.log(base));
    }

    private static double yarnMscale(double factor, double mscale) {
        return factor <= 1 ? 1.0 : 0.1 * mscale * Math.log(factor) + 1.0;
    }

    private boolean isMoe(int layer) {
        return config.getInt("n_routed_experts", 0) > 0 && layer >= config.getInt("first_k_dense_replace", 0)
                && layer % config.getInt("moe_layer_freq", 1) == 0;
    }

    /** Multi-head latent attention, computed naively: keys and values expanded from the latent for every head. */
    private double[][] latentAttention(double[][] h, String p, double[][] cos, double[][] sin, double scale) {
        int tokens = h.length;
        int heads = config.numHeads();
        int nope = config.getInt("qk_nope_head_dim");
        int ropeDim = config.getInt("qk_rope_head_dim");
        int valueDim = config.getInt("v_head_dim");
        int rank = config.getInt("kv_lora_rank");
        double eps = config.rmsNormEps();
        boolean interleaved = config.getBoolean("rope_interleave", true);
        double[][] q = config.getInt("q_lora_rank", 0) > 0
                ? linear(rms(linear(h, p + "q_a_proj"), weights.get(p + "q_a_layernorm.weight"), eps), p + "q_b_proj")
                : linear(h, p + "q_proj");
        double[][] compressed = linear(h, p + "kv_a_proj_with_mqa");
        double[][] latent = new double[tokens][];
        double[][] ropeKey = new double[tokens][];
        for (int t = 0; t < tokens; t++) {
            latent[t] = Arrays.copyOf(compressed[t], rank);
            ropeKey[t] = Arrays.copyOfRange(compressed[t], rank, rank + ropeDim);
            rope(ropeKey[t], 0, ropeDim, interleaved, cos[t], sin[t]);
            for (int head = 0; head < heads; head++) rope(q[t], head * (nope + ropeDim) + nope, ropeDim, interleaved, cos[t], sin[t]);
        }
        double[][] kv = linear(rms(latent, weights.get(p + "kv_a_layernorm.weight"), eps), p + "kv_b_proj");
        // Full keys per head: the head's "nope" part from kv_b_proj, then the shared rope key.
        int qk = nope + ropeDim;
        double[][] keys = new double[tokens][heads * qk];
        for (int t = 0; t < tokens; t++) {
            for (int head = 0; head < heads; head++) {
                System.arraycopy(kv[t], head * (nope + valueDim), keys[t], head * qk, nope);
                System.arraycopy(ropeKey[t], 0, keys[t], head * qk + nope, ropeDim);
            }
        }
        double[][] attended = new double[tokens][heads * valueDim];
        for (int head = 0; head < heads; head++) {
            attend(q, head * qk, keys, head * qk, qk, kv, head * (nope + valueDim) + nope, valueDim, scale, attended,
                    head * valueDim);
        }
        return linear(attended, p + "o_proj");
    }

    /** DeepSeekMoE: routed experts weighted by the router, plus the shared experts. */
    private double[][] moe(double[][] h, String p) {
        int experts = config.getInt("n_routed_experts");
        int perToken = config.getInt("num_experts_per_tok");
        boolean v3 = config.modelType().equals("deepseek_v3");
        String scoring = config.getString("scoring_func").orElse(v3 ? "sigmoid" : "softmax");
        String method = config.getString("topk_method").orElse(v3 ? "noaux_tc" : "greedy");
        int groups = config.getInt("n_group", 1);
        int groupsPerToken = config.getInt("topk_group", groups);
        double[] router = weights.get(p + "gate.weight");
        double[] bias = method.equals("noaux_tc") ? weights.get(p + "gate.e_score_correction_bias") : null;
        double[][] out = new double[h.length][];
        for (int t = 0; t < h.length; t++) {
            double[] logits = matVec(router, experts, h[t]);
            double[] scores = new double[experts];
            if (scoring.equals("sigmoid")) {
                for (int e = 0; e < experts; e++) scores[e] = 1 / (1 + Math.exp(-logits[e]));
            } else {
                double max = Arrays.stream(logits).max().orElseThrow(), sum = 0;
                for (int e = 0; e < experts; e++) sum += scores[e] = Math.exp(logits[e] - max);
                for (int e = 0; e < experts; e++) scores[e] /= sum;
            }
            double[] choice = scores.clone();
            if (bias != null) for (int e = 0; e < experts; e++) choice[e] += bias[e];
            if (!method.equals("greedy") && groupsPerToken < groups) {
                int size = experts / groups;
                double[] groupScore = new double[groups];
                for (int g = 0; g < groups; g++) {
                    double[] members = Arrays.copyOfRange(method.equals("noaux_tc") ? choice : scores, g * size, (g + 1) * size);
                    if (method.equals("noaux_tc")) {
                        for (int i : top(members, Math.min(2, size))) groupScore[g] += members[i];
                    } else {
                        groupScore[g] = Arrays.stream(members).max().orElseThrow();
                    }
                }
                boolean[] kept = new boolean[groups];
                for (int g : top(groupScore, groupsPerToken)) kept[g] = true;
                // The reference masks with 0.0, not minus infinity.
                for (int e = 0; e < experts; e++) if (!kept[e / size]) choice[e] = 0.0;
            }
            int[] chosen = top(choice, perToken);
            double sum = 0;
            for (int e : chosen) sum += scores[e];
            double[] y = new double[h[t].length];
            for (int e : chosen) {
                double w = scores[e];
                if (config.getBoolean("norm_topk_prob", false)) w /= sum + 1e-20;
                w *= config.getDouble("routed_scaling_factor", 1.0);
                double[] expert = mlp(new double[][] {h[t]}, p + "experts." + e + ".")[0];
                for (int i = 0; i < y.length; i++) y[i] += w * expert[i];
            }
            out[t] = y;
        }
        if (config.getInt("n_shared_experts", 0) > 0) add(out, mlp(h, p + "shared_experts."));
        return out;
    }

    /** Indices of the k largest values, largest first, the lower index first on ties (a stable sort's order). */
    private static int[] top(double[] values, int k) {
        Integer[] order = new Integer[values.length];
        for (int i = 0; i < order.length; i++) order[i] = i;
        Arrays.sort(order, (a, b) -> Double.compare(values[b], values[a]));
        int[] out = new int[k];
        for (int i = 0; i < k; i++) out[i] = order[i];
        return out;
    }

    // ---------------------------------------------------------------- shared pieces

    private double[][] embed(int[] tokens, int hidden) {
        double[] table = weights.get("model.embed_tokens.weight");
        double[][] x = new double[tokens.length][];
        for (int t = 0; t < tokens.length; t++) x[t] = Arrays.copyOfRange(table, tokens[t] * hidden, (tokens[t] + 1) * hidden);
        return x;
    }

    private double[][] head(double[][] x, double eps, String projection) {
        double[][] normed = rms(x, weights.get("model.norm.weight"), eps);
        double[] w = weights.get(headTensor != null ? headTensor : projection);
        int vocab = config.vocabSize();
        double[][] out = new double[x.length][];
        for (int t = 0; t < x.length; t++) out[t] = matVec(w, vocab, normed[t]);
        return out;
    }

    private double[][] mlp(double[][] h, String p) {
        double[][] gate = linear(h, p + "gate_proj");
        double[][] up = linear(h, p + "up_proj");
        for (int t = 0; t < h.length; t++) {
            for (int i = 0; i < gate[t].length; i++) gate[t][i] = gate[t][i] / (1 + Math.exp(-gate[t][i])) * up[t][i];
        }
        return linear(gate, p + "down_proj");
    }

    /** {@code x · Wᵀ (+ b)} for the layer {@code prefix} ({@code prefix.weight}, optional {@code prefix.bias}). */
    private double[][] linear(double[][] x, String prefix) {
        double[] w = weights.get(prefix + ".weight");
        int in = x[0].length;
        if (w.length % in != 0) throw new IllegalArgumentException(prefix + ".weight: " + w.length + " values for inputs of " + in);
        int out = w.length / in;
        double[] bias = weights.has(prefix + ".bias") ? weights.get(prefix + ".bias") : null;
        double[][] y = new double[x.length][];
        for (int t = 0; t < x.length; t++) {
            y[t] = matVec(w, out, x[t]);
            if (bias != null) for (int o = 0; o < out; o++) y[t][o] += bias[o];
        }
        return y;
    }

    private static double[] matVec(double[] w, int rows, double[] x) {
        int n = x.length;
        double[] y = new double[rows];
        for (int r = 0; r < rows; r++) {
            double s = 0;
            for (int c = 0, o = r * n; c < n; c++) s += w[o + c] * x[c];
            y[r] = s;
        }
        return y;
    }

    private static double[][] rms(double[][] x, double[] scale, double eps) {
        double[][] out = new double[x.length][];
        for (int t = 0; t < x.length; t++) {
            double sum = 0;
            for (double v : x[t]) sum += v * v;
            double inverse = 1 / Math.sqrt(sum / x[t].length + eps);
            out[t] = new double[x[t].length];
            for (int i = 0; i < x[t].length; i++) out[t][i] = x[t][i] * inverse * scale[i];
        }
        return out;
    }

    private static void add(double[][] accumulator, double[][] x) {
        for (int t = 0; t < x.length; t++) for (int i = 0; i < x[t].length; i++) accumulator[t][i] += x[t][i];
    }

    /**
     * Causal softmax attention of one head: query and key vectors of {@code dim} at their offsets, values of
     * {@code valueDim}; the result goes to {@code out[t][outOffset..]}.
     */
    private static void attend(double[][] q, int qOffset, double[][] k, int kOffset, int dim, double[][] v, int vOffset,
                               int valueDim, double scale, double[][] out, int outOffset) {
        for (int t = 0; t < q.length; t++) {
            double[] scores = new double[t + 1];
            double max = Double.NEGATIVE_INFINITY;
            for (int s = 0; s <= t; s++) {
                double dot = 0;
                for (int i = 0; i < dim; i++) dot += q[t][qOffset + i] * k[s][kOffset + i];
                scores[s] = dot * scale;
                max = Math.max(max, scores[s]);
            }
            double sum = 0;
            for (int s = 0; s <= t; s++) sum += scores[s] = Math.exp(scores[s] - max);
            for (int s = 0; s <= t; s++) {
                double p = scores[s] / sum;
                for (int i = 0; i < valueDim; i++) out[t][outOffset + i] += p * v[s][vOffset + i];
            }
        }
    }

    private static double[] ropeFrequencies(double theta, int dim) {
        double[] inverse = new double[dim / 2];
        for (int i = 0; i < inverse.length; i++) inverse[i] = 1 / Math.pow(theta, 2.0 * i / dim);
        return inverse;
    }

    /** cos or sin of position × frequency, times {@code magnitude}, per position. */
    private static double[][] angles(int positions, double[] inverse, double magnitude, boolean cosine) {
        double[][] out = new double[positions][inverse.length];
        for (int p = 0; p < positions; p++) {
            for (int i = 0; i < inverse.length; i++) {
                double angle = p * inverse[i];
                out[p][i] = magnitude * (cosine ? Math.cos(angle) : Math.sin(angle));
            }
        }
        return out;
    }

    /** Rotates {@code x[offset .. offset + dim)} whose pairs are (i, i + dim/2). */
    private static void rotateHalves(double[] x, int offset, int dim, double[] cos, double[] sin) {
        int half = dim / 2;
        for (int i = 0; i < half; i++) {
            double a = x[offset + i], b = x[offset + half + i];
            x[offset + i] = a * cos[i] - b * sin[i];
            x[offset + half + i] = b * cos[i] + a * sin[i];
        }
    }

    /**
     * DeepSeek's rope part: in the original (interleaved) layout the pairs are (2i, 2i + 1), and the reference first
     * de-interleaves them into halves, so the rotated vector comes out in halves layout.
     */
    private static void rope(double[] x, int offset, int dim, boolean interleaved, double[] cos, double[] sin) {
        if (interleaved) {
            double[] halves = new double[dim];
            for (int i = 0; i < dim / 2; i++) {
                halves[i] = x[offset + 2 * i];
                halves[dim / 2 + i] = x[offset + 2 * i + 1];
            }
            System.arraycopy(halves, 0, x, offset, dim);
        }
        rotateHalves(x, offset, dim, cos, sin);
    }

    /** Tensors of a map, falling back to another source for names the map lacks. */
    public static Tensors overlay(Map<String, double[]> overrides, Tensors fallback) {
        return new Tensors() {
            @Override
            public double[] get(String name) {
                double[] v = overrides.get(name);
                return v != null ? v : fallback.get(name);
            }

            @Override
            public boolean has(String name) {
                return overrides.containsKey(name) || fallback.has(name);
            }
        };
    }
}
