package dev.kiln.models;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.model.ModelConfig;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Rotary frequencies against values printed by the fixtures' numpy specification ({@code fixtures/spec}), which
 * reproduces the Hugging Face reference: the llama3 rule on {@code llama3-tiny}'s configuration and YaRN on
 * {@code deepseek-v3-tiny}'s, in both configuration styles.
 */
class RotaryFrequenciesTest {

    private static ModelConfig config(Object... fields) {
        Map<String, Object> json = new HashMap<>();
        for (int i = 0; i < fields.length; i += 2) json.put((String) fields[i], fields[i + 1]);
        return new ModelConfig(json, Path.of("config.json"));
    }

    private static void assertRelativelyClose(double[] expected, float[] actual) {
        assertEquals(expected.length, actual.length);
        for (int i = 0; i < expected.length; i++) {
            assertEquals(expected[i], actual[i], Math.abs(expected[i]) * 1e-6, "frequency " + i);
        }
    }

    @Test
    void theDefaultIsThetaToTheMinusTwoIOverD() {
        var rope = RotaryFrequencies.of(config("rope_theta", 10000.0).rope(), 8);
        assertRelativelyClose(new double[] {1, 0.1, 0.01, 0.001}, rope.inverseFrequencies());
        assertEquals(1f, rope.magnitude());
        assertEquals(8, rope.rotaryDim());
    }

    /** {@code dense_numpy.py}'s llama3 rule on llama3-tiny (head 16, theta 5e5, factor 8, original 8192). */
    private static final double[] LLAMA3_TINY = {1.0, 0.19392274474868576, 0.03760603093086393, 0.0072926647372171085,
            0.0005248461609929547, 3.428102195952591e-05, 6.647869871181236e-06, 1.2891731721515574e-06};

    @Test
    void llama3ScalingKeepsShortWavelengthsDividesLongOnesAndBlendsBetween() {
        Map<String, Object> scaling = Map.of("rope_type", "llama3", "factor", 8.0, "low_freq_factor", 1.0,
                "high_freq_factor", 4.0, "original_max_position_embeddings", 8192);
        var hubStyle = RotaryFrequencies.of(config("rope_theta", 500000.0, "rope_scaling", scaling).rope(), 16);
        Map<String, Object> parameters = new HashMap<>(scaling);
        parameters.put("rope_theta", 500000.0);
        var transformers5Style = RotaryFrequencies.of(config("rope_parameters", parameters).rope(), 16);

        assertRelativelyClose(LLAMA3_TINY, hubStyle.inverseFrequencies());
        assertArrayEquals(hubStyle.inverseFrequencies(), transformers5Style.inverseFrequencies());
        assertEquals(1f, hubStyle.magnitude());
    }

    /** {@code deepseek_numpy.py}'s YaRN on deepseek-v3-tiny (rope dim 16, factor 4, original 1024, mscale 1/1). */
    private static final double[] YARN_DEEPSEEK_TINY = {1.0, 0.31622776601683794, 0.08125000000000002,
            0.019764235376052368, 0.004375, 0.000790569415042095, 0.00025, 7.905694150420948e-05};

    @Test
    void yarnBlendsInterpolationAndExtrapolationOverTheCorrectionRange() {
        Map<String, Object> scaling = Map.of("type", "yarn", "factor", 4.0, "beta_fast", 32, "beta_slow", 1,
                "mscale", 1.0, "mscale_all_dim", 1.0, "original_max_position_embeddings", 1024);
        var rope = RotaryFrequencies.of(config("rope_theta", 10000.0, "rope_scaling", scaling).rope(), 16);
        assertRelativelyClose(YARN_DEEPSEEK_TINY, rope.inverseFrequencies());
        assertEquals(1f, rope.magnitude(), "mscale equal to mscale_all_dim cancels");
    }

    @Test
    void yarnWithoutMscaleAllDimScalesCosAndSinByTheAttentionFactor() {
        Map<String, Object> scaling = Map.of("rope_type", "yarn", "factor", 4.0,
                "original_max_position_embeddings", 32768);
        var rope = RotaryFrequencies.of(config("rope_theta", 1e6, "rope_scaling", scaling).rope(), 128);
        // Values from the same numpy rule: dimensions 23..40 form the ramp for theta 1e6 and 32768 positions.
        int[] at = {0, 23, 24, 31, 40, 63};
        double[] expected = {1.0, 0.006978305848598663, 0.005375321490790102, 0.0008029597275452302,
                4.445698525097307e-05, 3.102344401879299e-07};
        float[] actual = new float[at.length];
        for (int i = 0; i < at.length; i++) actual[i] = rope.inverseFrequencies()[at[i]];
        assertRelativelyClose(expected, actual);
        assertEquals(0.1 * Math.log(4) + 1, rope.magnitude(), 1e-6);

        var explicit = RotaryFrequencies.of(config("rope_theta", 1e6, "rope_scaling",
                Map.of("rope_type", "yarn", "factor", 4.0, "attention_factor", 0.5)).rope(), 128);
        assertEquals(0.5f, explicit.magnitude());
    }

    @Test
    void linearScalingDividesEveryFrequency() {
        var rope = RotaryFrequencies.of(config("rope_theta", 10000.0, "rope_scaling",
                Map.of("type", "linear", "factor", 2.0)).rope(), 4);
        assertRelativelyClose(new double[] {0.5, 0.005}, rope.inverseFrequencies());
    }

    @Test
    void positionDependentScalingAndOddDimensionsAreRefused() {
        var dynamic = assertThrows(InvalidCheckpointException.class, () -> RotaryFrequencies.of(
                config("rope_scaling", Map.of("rope_type", "dynamic", "factor", 2.0)).rope(), 16));
        assertEquals("rope_scaling.rope_type", dynamic.field());
        var missing = assertThrows(InvalidCheckpointException.class, () -> RotaryFrequencies.of(
                config("rope_scaling", Map.of("rope_type", "llama3", "factor", 8.0)).rope(), 16));
        assertEquals("rope_scaling.low_freq_factor", missing.field());
        assertThrows(InvalidCheckpointException.class, () -> RotaryFrequencies.of(config().rope(), 15));
    }

    @Test
    void yarnMscaleIsOneWithoutExtension() {
        assertEquals(1.0, RotaryFrequencies.yarnMscale(1.0, 0.707));
        assertEquals(0.1 * 0.707 * Math.log(40) + 1, RotaryFrequencies.yarnMscale(40, 0.707), 1e-12);
    }
}
