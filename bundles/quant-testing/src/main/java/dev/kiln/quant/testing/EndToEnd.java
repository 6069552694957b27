package dev.kiln.quant.testing;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.quant.Quantizer;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.function.BiFunction;

/**
 * End-to-end exactness of a weight format: a model built with the quantizer computes the logits that a float64
 * forward of the same model computes when every quantized layer is replaced by its dequantized values. The two
 * differ only by f32 rounding, so the bound is the fixtures' bound for f32 engines.
 */
public final class EndToEnd {
    /** The fixtures README's bound on logits of a float32 engine against float64. */
    public static final double LOGIT_TOLERANCE = 1e-3;
    /** The name under which a tied head quantized separately from the embedding table is handed to the forward. */
    private static final String SEPARATE_HEAD = "kiln.quantized_head.weight";

    private EndToEnd() {}

    /** What a comparison found. */
    public record Comparison(float[][] logits, double[][] float64Logits, Map<String, Weight> quantized, double maxDiff) {}

    /**
     * Builds the model in {@code folder} with {@code quantizer}, scores {@code tokens} (logits after each), computes
     * the float64 forward with the weights {@code dequantize} gives for each layer the quantizer loaded (called with
     * the layer's prefix and the weight; {@code null} keeps the checkpoint's own {@code prefix.weight}: a layer kept
     * as stored), and asserts they agree within {@link #LOGIT_TOLERANCE}.
     */
    public static Comparison assertMatchesFloat64(Path folder, Quantizer quantizer,
                                                  BiFunction<String, Weight, double[]> dequantize, int[] tokens, String label) {
        var recording = new RecordingQuantizer(quantizer);
        try (Checkpoint reference = Models.open(folder);
             CausalLanguageModel model = Models.build(Models.open(folder), recording, 256)) {
            float[][] actual = Models.score(model, tokens);
            Map<String, double[]> dequantized = new HashMap<>();
            String head = null;
            for (var entry : recording.loaded().entrySet()) {
                double[] values = dequantize.apply(entry.getKey(), entry.getValue());
                if (values == null) continue;
                if (entry.getKey().equals("model.embed_tokens")) {
                    head = SEPARATE_HEAD;
                    dequantized.put(SEPARATE_HEAD, values);
                } else {
                    dequantized.put(entry.getKey() + ".weight", values);
                }
            }
            assertFalse(dequantized.isEmpty(), label + ": no layer went through the quantizer");
            var forward = new Float64Forward(reference.config(),
                    Float64Forward.overlay(dequantized, new CheckpointTensors(reference)), head);
            double[][] expected = forward.logits(tokens);
            double diff = Quality.maxAbsDiff(actual, expected);
            System.out.printf("%s: %d tokens, %d quantized layers: max |logit - float64 with dequantized weights| = %.2e"
                    + " (logits up to %.1f)%n", label, tokens.length, dequantized.size(), diff, Quality.maxAbs(expected));
            assertTrue(diff < LOGIT_TOLERANCE, label + ": logits differ by " + diff);
            return new Comparison(actual, expected, Map.copyOf(recording.loaded()), diff);
        }
    }
}
