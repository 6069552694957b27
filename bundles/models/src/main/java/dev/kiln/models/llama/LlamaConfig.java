package dev.kiln.models.llama;

import dev.kiln.api.model.ModelConfig;
import dev.kiln.models.RotaryFrequencies;

/**
 * The dimensions and options of a Llama-family decoder, read from {@code config.json} and checked once.
 *
 * <p>The family members differ only in which linear layers carry a bias: Qwen2 always has q/k/v biases (its
 * attention is built with them unconditionally), Llama has q/k/v/o biases when {@code attention_bias} is set and
 * MLP biases when {@code mlp_bias} is set.
 *
 * @param architecture     {@code qwen2} or {@code llama}
 * @param hiddenSize       width of the residual stream
 * @param layers           decoder layers
 * @param heads            query heads
 * @param kvHeads          key/value heads (grouped-query attention when fewer than {@code heads})
 * @param headDim          elements per head
 * @param intermediateSize width of the MLP's gate and up projections
 * @param vocabSize        rows of the embedding table and of the output projection
 * @param rmsNormEps       epsilon of every RMSNorm
 * @param qkvBias          whether q, k and v projections must have biases
 * @param outputBias       whether the attention output projection must have a bias
 * @param mlpBias          whether the MLP projections must have biases
 * @param tiedEmbeddings   whether the output projection is the embedding table
 * @param rope             rotary frequencies after the checkpoint's scaling rule, over the whole head
 */
public record LlamaConfig(String architecture, int hiddenSize, int layers, int heads, int kvHeads, int headDim,
                          int intermediateSize, int vocabSize, float rmsNormEps, boolean qkvBias, boolean outputBias,
                          boolean mlpBias, boolean tiedEmbeddings, RotaryFrequencies rope) {

    /** Reads a {@code qwen2} configuration (DeepSeek-R1-Distill-Qwen, Qwen2, Qwen2.5). */
    public static LlamaConfig qwen2(ModelConfig config) {
        if (config.getBoolean("use_sliding_window", false)) {
            throw config.invalid("use_sliding_window", "sliding-window attention is not supported");
        }
        return read("qwen2", config, true, false, false);
    }

    /** Reads a {@code llama} configuration (DeepSeek-R1-Distill-Llama, Llama 2/3). */
    public static LlamaConfig llama(ModelConfig config) {
        boolean attentionBias = config.getBoolean("attention_bias", false);
        return read("llama", config, attentionBias, attentionBias, config.getBoolean("mlp_bias", false));
    }

    private static LlamaConfig read(String architecture, ModelConfig config, boolean qkvBias, boolean outputBias,
                                    boolean mlpBias) {
        String activation = config.getString("hidden_act").orElse("silu");
        if (!activation.equals("silu")) {
            throw config.invalid("hidden_act", "'" + activation + "' is not supported (the Llama family uses silu)");
        }
        int headDim = config.headDim();
        return new LlamaConfig(architecture, config.hiddenSize(), config.numLayers(), config.numHeads(),
                config.numKeyValueHeads(), headDim, config.intermediateSize(), config.vocabSize(),
                (float) config.rmsNormEps(), qkvBias, outputBias, mlpBias, config.tieWordEmbeddings(),
                RotaryFrequencies.of(config.rope(), headDim));
    }

    /** Width of all query heads together. */
    public int queryDim() {
        return heads * headDim;
    }

    /** Width of all key (or value) heads together. */
    public int kvDim() {
        return kvHeads * headDim;
    }

    /** The softmax scale {@code 1 / sqrt(head_dim)}. */
    public float attentionScale() {
        return (float) (1.0 / Math.sqrt(headDim));
    }
}
