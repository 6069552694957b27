package dev.kiln.models.llama;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.tensor.DType;
import dev.kiln.models.testing.EditedCheckpoint;
import dev.kiln.models.testing.Harness;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Test;

/**
 * Checkpoints that disagree with their configuration are refused at build time with an exception naming the
 * tensor or field at fault, and the checkpoint the model would have owned is closed.
 */
class CheckpointValidationTest {

    private static InvalidCheckpointException refused(String fixture, UnaryOperator<EditedCheckpoint> edit) {
        EditedCheckpoint checkpoint = edit.apply(new EditedCheckpoint(Harness.open(fixture)));
        var e = assertThrows(InvalidCheckpointException.class, () -> Harness.build(checkpoint, null, 64).close());
        assertTrue(checkpoint.closed(), "the refused checkpoint is closed");
        return e;
    }

    private static void assertNames(InvalidCheckpointException e, String field, String reason) {
        assertEquals(field, e.field(), e.getMessage());
        assertTrue(e.getMessage().contains(field), e.getMessage());
        assertTrue(e.getMessage().contains(reason), e.getMessage());
    }

    @Test
    void aProjectionOfTheWrongShapeIsRefusedByName() {
        var e = refused("qwen2-tiny", c -> c.reshape("model.layers.1.self_attn.q_proj.weight", 32, 64));
        assertNames(e, "model.layers.1.self_attn.q_proj.weight", "[32, 64]");
        assertTrue(e.getMessage().contains("[64, 64]"), "states the expected shape: " + e.getMessage());
    }

    @Test
    void aTransposedMlpWeightIsRefusedByName() {
        var e = refused("llama3-tiny", c -> c.reshape("model.layers.1.mlp.down_proj.weight", 176, 64));
        assertNames(e, "model.layers.1.mlp.down_proj.weight", "[176, 64]");
    }

    @Test
    void aBiasOfTheWrongShapeIsRefusedByName() {
        var e = refused("qwen2-tiny", c -> c.reshape("model.layers.0.self_attn.k_proj.bias", 64));
        assertNames(e, "model.layers.0.self_attn.k_proj.bias", "[64]");
    }

    @Test
    void aMissingQwen2BiasIsRefusedByName() {
        var e = refused("qwen2-tiny", c -> c.remove("model.layers.2.self_attn.v_proj.bias"));
        assertNames(e, "model.layers.2.self_attn.v_proj.bias", "missing");
    }

    @Test
    void aLlamaWithAttentionBiasNeedsTheBiases() {
        var e = refused("llama3-tiny", c -> c.configure("attention_bias", true));
        assertNames(e, "model.layers.0.self_attn.q_proj.bias", "missing");
    }

    @Test
    void normsEmbeddingsAndTheHeadAreCheckedToo() {
        assertNames(refused("qwen2-tiny", c -> c.reshape("model.layers.2.post_attention_layernorm.weight", 32)),
                "model.layers.2.post_attention_layernorm.weight", "[32]");
        assertNames(refused("qwen2-tiny", c -> c.reshape("model.embed_tokens.weight", 384, 32)),
                "model.embed_tokens.weight", "[384, 32]");
        assertNames(refused("llama3-tiny", c -> c.reshape("lm_head.weight", 160, 64)), "lm_head.weight", "[160, 64]");
        assertNames(refused("llama3-tiny", c -> c.reshape("model.norm.weight", 64, 1)), "model.norm.weight", "[64, 1]");
    }

    @Test
    void aConfigurationThatDisagreesWithTheTensorsIsRefusedAtTheFirstTensor() {
        var e = refused("qwen2-tiny", c -> c.configure("intermediate_size", 128));
        assertNames(e, "model.layers.0.mlp.gate_proj.weight", "[160, 64]");
        var layers = refused("llama3-tiny", c -> c.configure("num_hidden_layers", 3));
        assertNames(layers, "model.layers.2.input_layernorm.weight", "missing");
    }

    @Test
    void aWeightThatHoldsIntegersIsRefusedByName() {
        var e = refused("qwen2-tiny", c -> c.retype("model.layers.0.mlp.up_proj.weight", DType.I16));
        assertEquals("model.layers.0.mlp.up_proj.weight", e.field(), e.getMessage());
    }

    @Test
    void unsupportedConfigurationsAreRefusedByField() {
        assertNames(refused("qwen2-tiny", c -> c.configure("rope_scaling", Map.of("rope_type", "dynamic", "factor", 2.0))),
                "rope_scaling.rope_type", "dynamic");
        assertNames(refused("qwen2-tiny", c -> c.configure("use_sliding_window", true)), "use_sliding_window",
                "sliding");
        assertNames(refused("llama3-tiny", c -> c.configure("hidden_act", "gelu")), "hidden_act", "gelu");
        assertNames(refused("llama3-tiny", c -> c.configure("rope_parameters",
                Map.of("rope_type", "llama3", "rope_theta", 500000.0, "factor", 8.0))), "rope_scaling.low_freq_factor",
                "missing");
    }

    @Test
    void eachArchitectureClaimsOnlyItsModelType() {
        var qwen2 = Harness.open("qwen2-tiny");
        var llama = Harness.open("llama3-tiny");
        try (qwen2; llama) {
            assertEquals(List.of(true, false), List.of(new Qwen2Architecture().supports(qwen2.config()),
                    new Qwen2Architecture().supports(llama.config())));
            assertEquals(List.of(false, true), List.of(new LlamaArchitecture().supports(qwen2.config()),
                    new LlamaArchitecture().supports(llama.config())));
        }
    }
}
