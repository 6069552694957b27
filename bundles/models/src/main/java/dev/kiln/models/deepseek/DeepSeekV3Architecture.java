package dev.kiln.models.deepseek;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ModelArchitecture;
import dev.kiln.api.model.ModelBuildOptions;
import dev.kiln.api.model.ModelConfig;
import org.osgi.service.component.annotations.Component;

/**
 * Builds {@code deepseek_v3} checkpoints (DeepSeek-V3, R1): MLA with a compressed query, YaRN, DeepSeekMoE with
 * sigmoid scores and group-limited selection, the MTP module; bf16 or FP8 blocks (with the {@code fp8} quantizer).
 */
@Component(service = ModelArchitecture.class, property = KilnProperties.NAME + "=deepseek_v3")
public final class DeepSeekV3Architecture implements ModelArchitecture {
    /** The architecture; it keeps no state. */
    public DeepSeekV3Architecture() {}

    @Override
    public boolean supports(ModelConfig config) {
        return config.getString("model_type").map("deepseek_v3"::equals).orElse(false);
    }

    @Override
    public CausalLanguageModel build(Checkpoint checkpoint, ModelBuildOptions options) {
        return DeepSeekArchitectures.build(checkpoint, options, "deepseek_v3");
    }
}
