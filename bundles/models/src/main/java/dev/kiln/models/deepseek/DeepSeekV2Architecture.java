package dev.kiln.models.deepseek;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ModelArchitecture;
import dev.kiln.api.model.ModelBuildOptions;
import dev.kiln.api.model.ModelConfig;
import org.osgi.service.component.annotations.Component;

/**
 * Builds {@code deepseek_v2} checkpoints (DeepSeek-V2, V2-Lite, V2.5, Coder-V2): MLA with or without a compressed
 * query, DeepSeekMoE with softmax scores and greedy or group-limited selection.
 */
@Component(service = ModelArchitecture.class, property = KilnProperties.NAME + "=deepseek_v2")
public final class DeepSeekV2Architecture implements ModelArchitecture {
    /** The architecture; it keeps no state. */
    public DeepSeekV2Architecture() {}

    @Override
    public boolean supports(ModelConfig config) {
        return config.getString("model_type").map("deepseek_v2"::equals).orElse(false);
    }

    @Override
    public CausalLanguageModel build(Checkpoint checkpoint, ModelBuildOptions options) {
        return DeepSeekArchitectures.build(checkpoint, options, "deepseek_v2");
    }
}
