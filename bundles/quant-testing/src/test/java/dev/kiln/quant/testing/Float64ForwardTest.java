package dev.kiln.quant.testing;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.loader.safetensors.SafetensorsFile;
import dev.kiln.loader.safetensors.TensorValues;
import java.io.IOException;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The float64 forward that the weight-format tests compare against is itself right: it reproduces the fixtures'
 * reference logits (transformers in float64) to float64 precision, and Kiln's own forward of the default model to
 * f32 precision.
 */
class Float64ForwardTest {
    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny", "deepseek-v3-tiny", "deepseek-v2-lite-tiny"})
    void reproducesTheFixturesReferenceLogits(String fixture) throws IOException {
        try (Checkpoint checkpoint = Models.open(Models.fixture(fixture));
             SafetensorsFile reference = SafetensorsFile.open(Models.fixture(fixture).resolve("reference.safetensors"))) {
            var forward = new Float64Forward(checkpoint.config(), new CheckpointTensors(checkpoint));
            for (int i = 0; i < 2; i++) {
                int[] prompt = TensorValues.toInts(reference.tensor("input_ids_" + i));
                float[] expected = TensorValues.toFloats(reference.tensor("logits_" + i));
                double[][] logits = forward.logits(prompt);
                int vocab = logits[0].length;
                double diff = 0, scale = 0;
                for (int t = 0; t < prompt.length; t++) {
                    for (int v = 0; v < vocab; v++) {
                        diff = Math.max(diff, Math.abs(logits[t][v] - expected[t * vocab + v]));
                        scale = Math.max(scale, Math.abs(expected[t * vocab + v]));
                    }
                }
                System.out.printf("%s prompt %d: float64 forward within %.1e of the reference (logits up to %.1f)%n",
                        fixture, i, diff, scale);
                // The reference is stored as f32: its own rounding is ~6e-8 of the scale.
                assertTrue(diff < 1e-5 * scale, fixture + " prompt " + i + ": differs by " + diff);
            }
        }
    }

    @Test
    void agreesWithKilnOnTheDefaultModel() {
        try (Checkpoint checkpoint = Models.open(Models.defaultModel());
             CausalLanguageModel model = Models.build(Models.open(Models.defaultModel()), null, 256)) {
            int[] tokens = Arrays.copyOf(Quality.heldOutTokens(Models.defaultModel()), 96);
            double[][] expected = new Float64Forward(checkpoint.config(), new CheckpointTensors(checkpoint)).logits(tokens);
            float[][] actual = Models.score(model, tokens);
            double diff = Quality.maxAbsDiff(actual, expected);
            System.out.printf("default model: Kiln within %.1e of the float64 forward (logits up to %.1f)%n", diff,
                    Quality.maxAbs(expected));
            assertTrue(diff < 1e-3, "differs by " + diff);
        }
    }
}
