package dev.kiln.quant.awq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.quant.cpu.Int4GroupWeight;
import dev.kiln.quant.testing.EndToEnd;
import dev.kiln.quant.testing.Models;
import dev.kiln.quant.testing.Quality;
import dev.kiln.quant.testing.RecordingQuantizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.function.BiFunction;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Whole AWQ models, from checkpoints written as AutoAWQ writes them: their logits are those of a float64 forward
 * whose quantized layers are unpacked independently (AutoAWQ's own dequantization) from the checkpoint (fixtures and
 * the default model), and on the trained default model AWQ costs at most 5% of held-out perplexity at about a quarter
 * of the bytes of bf16 plus scales and zero points. Top-1 agreement with bf16 is reported for the fixtures.
 */
class AwqModelTest {
    @TempDir
    Path folder;

    /** Dequantizes a layer of the AWQ checkpoint in float64, independently of the weight Kiln loaded. */
    private static BiFunction<String, Weight, double[]> independentlyUnpacked(Checkpoint awq) {
        return (prefix, weight) -> weight instanceof Int4GroupWeight ? AutoAwq.dequantize(awq, prefix) : null;
    }

    @ParameterizedTest
    @CsvSource({"qwen2-tiny, 32", "llama3-tiny, 16"})
    void fixtureLogitsAreTheFloat64ForwardOfTheUnpackedModel(String fixture, int groupSize) throws IOException {
        AutoAwq.write(Models.fixture(fixture), folder, groupSize);
        try (Checkpoint awq = Models.open(folder)) {
            for (int i = 0; i < 2; i++) {
                int[] tokens = Models.referenceSequence(fixture, i);
                String label = fixture + " sequence " + i + ", awq g" + groupSize;
                var comparison = EndToEnd.assertMatchesFloat64(folder, new AwqQuantizer(), independentlyUnpacked(awq), tokens, label);
                comparison.quantized().values().forEach(w -> assertEquals("awq", w.format()));
                try (CausalLanguageModel dense = Models.build(Models.open(Models.fixture(fixture)), null, 256)) {
                    System.out.printf("%s: top-1 agreement with bf16: %.1f%%%n", label,
                            100 * Quality.top1Agreement(comparison.logits(), Models.score(dense, tokens)));
                }
            }
        }
    }

    @Test
    void theDefaultModelMatchesItsFloat64ForwardAndKeepsItsPerplexityWithinFivePercent() throws IOException {
        int groupSize = 64; // divides every input width of the default model (320, 128, 64, 256, 768)
        AutoAwq.write(Models.defaultModel(), folder, groupSize);
        int[] heldOut = Quality.heldOutTokens(Models.defaultModel());
        try (Checkpoint awq = Models.open(folder)) {
            EndToEnd.assertMatchesFloat64(folder, new AwqQuantizer(), independentlyUnpacked(awq),
                    Arrays.copyOf(heldOut, 128), "default model, awq g" + groupSize);
        }
        var recording = new RecordingQuantizer(new AwqQuantizer());
        try (Checkpoint original = Models.open(Models.defaultModel());
             CausalLanguageModel dense = Models.build(Models.open(Models.defaultModel()), null, 256);
             CausalLanguageModel quantized = Models.build(Models.open(folder), recording, 256)) {
            float[][] reference = Models.score(dense, heldOut);
            float[][] logits = Models.score(quantized, heldOut);
            double base = Quality.perplexity(reference, heldOut);
            double perplexity = Quality.perplexity(logits, heldOut);
            long quantizedBytes = 0, bf16Bytes = 0, layers = 0;
            for (var entry : recording.loaded().entrySet()) {
                if (!(entry.getValue() instanceof Int4GroupWeight w)) continue;
                layers++;
                quantizedBytes += w.bytes();
                bf16Bytes += original.tensor(entry.getKey() + ".weight").data().byteSize();
            }
            double ratio = (double) quantizedBytes / bf16Bytes;
            System.out.printf("default model, %d held-out tokens: perplexity bf16 %.3f, awq g%d %.3f (%+.2f%%); top-1"
                    + " agreement %.1f%%; %d quantized layers: %d bytes against %d in bf16 (%.3f); model %d -> %d bytes%n",
                    heldOut.length, base, groupSize, perplexity, 100 * (perplexity / base - 1),
                    100 * Quality.top1Agreement(logits, reference), layers, quantizedBytes, bf16Bytes, ratio,
                    dense.weightBytes(), quantized.weightBytes());
            assertEquals(8 + 3 * 32, layers, "every projection of the four decoder layers is AWQ (the MTP module is not)");
            assertTrue(perplexity <= 1.05 * base, "perplexity " + perplexity + " against " + base);
            assertTrue(ratio < 0.36, "AWQ layers take " + ratio + " of their bf16 bytes");
        }
    }
}
