package dev.kiln.models.llama;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ModelArchitecture;
import dev.kiln.api.model.ModelBuildOptions;
import dev.kiln.api.model.ModelConfig;
import org.osgi.service.component.annotations.Component;

/**
 * Builds {@code qwen2} checkpoints (Qwen2, Qwen2.5 and DeepSeek-R1-Distill-Qwen): the Llama family with q/k/v
 * biases.
 */
@Component(service = ModelArchitecture.class, property = KilnProperties.NAME + "=qwen2")
public final class Qwen2Architecture implements ModelArchitecture {
    @Override
    public boolean supports(ModelConfig config) {
        return config.getString("model_type").map("qwen2"::equals).orElse(false);
    }

    @Override
    public CausalLanguageModel build(Checkpoint checkpoint, ModelBuildOptions options) {
        LlamaConfig config;
        try {
            config = LlamaConfig.qwen2(checkpoint.config());
        } catch (RuntimeException e) {
            checkpoint.close();
            throw e;
        }
        return LlamaModel.build(checkpoint, options, config);
    }
}
