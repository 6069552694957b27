package dev.kiln.models.llama;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ModelArchitecture;
import dev.kiln.api.model.ModelBuildOptions;
import dev.kiln.api.model.ModelConfig;
import org.osgi.service.component.annotations.Component;

/**
 * Builds {@code llama} checkpoints (Llama 2/3 and DeepSeek-R1-Distill-Llama): the Llama family with biases only
 * where {@code attention_bias} or {@code mlp_bias} say so.
 */
@Component(service = ModelArchitecture.class, property = KilnProperties.NAME + "=llama")
public final class LlamaArchitecture implements ModelArchitecture {
    @Override
    public boolean supports(ModelConfig config) {
        return config.getString("model_type").map("llama"::equals).orElse(false);
    }

    @Override
    public CausalLanguageModel build(Checkpoint checkpoint, ModelBuildOptions options) {
        LlamaConfig config;
        try {
            config = LlamaConfig.llama(checkpoint.config());
        } catch (RuntimeException e) {
            checkpoint.close();
            throw e;
        }
        return LlamaModel.build(checkpoint, options, config);
    }
}
