package dev.kiln.api.model;

import dev.kiln.api.checkpoint.Checkpoint;

/**
 * Builds models of one architecture (service property {@code kiln.name}: the {@code model_type} it serves, such as
 * {@code qwen2}, {@code llama}, {@code deepseek_v3}).
 */
public interface ModelArchitecture {
    /** Whether this architecture can build a model from the configuration. */
    boolean supports(ModelConfig config);

    /**
     * Builds the model from an opened checkpoint; the model takes ownership of the checkpoint and closes it.
     *
     * @throws dev.kiln.api.checkpoint.InvalidCheckpointException when a tensor is missing or has the wrong shape
     */
    CausalLanguageModel build(Checkpoint checkpoint, ModelBuildOptions options);
}
