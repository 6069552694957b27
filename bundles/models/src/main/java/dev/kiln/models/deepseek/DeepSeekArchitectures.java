package dev.kiln.models.deepseek;

import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ModelBuildOptions;

/** What the two architecture components share: reading the configuration, then building the model. */
final class DeepSeekArchitectures {
    private DeepSeekArchitectures() {}

    /** Builds a model of {@code modelType}; the checkpoint is closed if anything fails. */
    static CausalLanguageModel build(Checkpoint checkpoint, ModelBuildOptions options, String modelType) {
        DeepSeekConfig config;
        try {
            if (!checkpoint.config().modelType().equals(modelType)) {
                throw checkpoint.config().invalid("model_type", "'" + checkpoint.config().modelType()
                        + "' given to the " + modelType + " architecture");
            }
            config = DeepSeekConfig.read(checkpoint.config());
        } catch (RuntimeException e) {
            checkpoint.close();
            throw e;
        }
        return DeepSeekModel.build(checkpoint, options, config);
    }
}
