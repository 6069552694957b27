package dev.kiln.quant.int8;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.quant.int8.internal.Int8ChannelWeight;
import dev.kiln.quant.testing.EndToEnd;
import dev.kiln.quant.testing.Models;
import dev.kiln.quant.testing.Quality;
import dev.kiln.quant.testing.RecordingQuantizer;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Whole models with weight-only INT8: their logits are those of a float64 forward with the dequantized weights
 * (fixtures and the default model), and on the trained default model quantization costs at most 1% of held-out
 * perplexity while the quantized layers take about half the bytes of bf16. Top-1 agreement with the bf16 model is
 * reported for the random-weight fixtures, where it is low by nature.
 */
class Int8ModelTest {
    /** The dequantized matrix {@code q · s}, in float64. */
    static double[] dequantized(String prefix, Weight weight) {
        var w = (Int8ChannelWeight) weight;
        double[] out = new double[w.rows() * w.columns()];
        for (int r = 0; r < w.rows(); r++) {
            for (int c = 0; c < w.columns(); c++) out[r * w.columns() + c] = w.code(r, c) * (double) w.scale(r);
        }
        return out;
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny"})
    void fixtureLogitsAreTheFloat64ForwardOfTheDequantizedModel(String fixture) {
        for (int i = 0; i < 2; i++) {
            int[] tokens = Models.referenceSequence(fixture, i);
            var comparison = EndToEnd.assertMatchesFloat64(Models.fixture(fixture), new Int8Quantizer(),
                    Int8ModelTest::dequantized, tokens, fixture + " sequence " + i + ", weight_only_int8");
            comparison.quantized().values().forEach(w -> assertEquals("weight_only_int8", w.format()));
            try (CausalLanguageModel dense = Models.build(Models.open(Models.fixture(fixture)), null, 256)) {
                System.out.printf("%s sequence %d: top-1 agreement of weight_only_int8 with bf16: %.1f%%%n", fixture, i,
                        100 * Quality.top1Agreement(comparison.logits(), Models.score(dense, tokens)));
            }
        }
    }

    @Test
    void defaultModelLogitsAreTheFloat64ForwardOfTheDequantizedModel() {
        int[] tokens = Arrays.copyOf(Quality.heldOutTokens(Models.defaultModel()), 128);
        var comparison = EndToEnd.assertMatchesFloat64(Models.defaultModel(), new Int8Quantizer(),
                Int8ModelTest::dequantized, tokens, "default model, weight_only_int8");
        assertTrue(comparison.quantized().containsKey("model.layers.1.self_attn.kv_b_proj"), "MLA's up-projection too");
    }

    @Test
    void heldOutPerplexityOfTheDefaultModelRisesAtMostOnePercentAtHalfTheBytes() {
        int[] tokens = Quality.heldOutTokens(Models.defaultModel());
        var recording = new RecordingQuantizer(new Int8Quantizer());
        try (Checkpoint original = Models.open(Models.defaultModel());
             CausalLanguageModel dense = Models.build(Models.open(Models.defaultModel()), null, 256);
             CausalLanguageModel quantized = Models.build(Models.open(Models.defaultModel()), recording, 256)) {
            float[][] reference = Models.score(dense, tokens);
            float[][] logits = Models.score(quantized, tokens);
            double base = Quality.perplexity(reference, tokens);
            double perplexity = Quality.perplexity(logits, tokens);
            long quantizedBytes = 0, bf16Bytes = 0;
            for (var entry : recording.loaded().entrySet()) {
                quantizedBytes += entry.getValue().bytes();
                bf16Bytes += original.tensor(entry.getKey() + ".weight").data().byteSize();
            }
            double ratio = (double) quantizedBytes / bf16Bytes;
            System.out.printf("default model, %d held-out tokens: perplexity bf16 %.3f, weight_only_int8 %.3f (%+.2f%%);"
                    + " top-1 agreement %.1f%%; %d quantized layers: %d bytes against %d in bf16 (%.3f); model %d -> %d bytes%n",
                    tokens.length, base, perplexity, 100 * (perplexity / base - 1),
                    100 * Quality.top1Agreement(logits, reference), recording.loaded().size(), quantizedBytes, bf16Bytes,
                    ratio, dense.weightBytes(), quantized.weightBytes());
            assertTrue(perplexity <= 1.01 * base, "perplexity " + perplexity + " against " + base);
            assertTrue(ratio > 0.5 && ratio < 0.53, "INT8 layers take " + ratio + " of their bf16 bytes");
        }
    }
}
