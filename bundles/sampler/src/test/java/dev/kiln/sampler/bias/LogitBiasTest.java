package dev.kiln.sampler.bias;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.sampler.DefaultSampler;
import dev.kiln.sampler.View;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class LogitBiasTest {
    private static final float[] LOGITS = {0.5f, 2f, -1f, 4f, 1f, -3f};

    private static SamplingParams biased(double temperature, Map<Integer, Float> bias) {
        return new SamplingParams(temperature, 1, 0, 0, 0, 0, 1, 7L, 0, bias);
    }

    @Test
    void theBiasIsAddedToTheListedTokensOnly() {
        var view = View.of(biased(1, Map.of(1, 3f, 3, -100f, 9, 5f)));
        var processor = new LogitBias();
        assertTrue(processor.appliesTo(view));
        float[] logits = LOGITS.clone();
        processor.process(logits, view);
        // Token 9 is past these 6 logits (a row of a smaller model's output): skipped, not an error.
        assertArrayEquals(new float[] {0.5f, 5f, -1f, -96f, 1f, -3f}, logits);
    }

    @Test
    void withoutABiasNothingApplies() {
        assertFalse(new LogitBias().appliesTo(View.of(biased(1, Map.of()))));
        assertFalse(new LogitBias().appliesTo(View.of(new SamplingParams(1, 1, 0, 0, 0, 0, 1, null, 0))));
    }

    @Test
    void minusOneHundredBansTheGreedyTokenAndPlusOneHundredForcesAnotherAtAnyTemperature() {
        DefaultSampler sampler = new DefaultSampler();
        float[] banned = LOGITS.clone();
        var greedy = View.of(biased(0, Map.of(3, -100f)));
        new LogitBias().process(banned, greedy);
        assertEquals(1, sampler.sample(banned, greedy, new SplittableRandom(1)), "the best token left once 3 is banned");
        for (int draw = 0; draw < 50; draw++) {
            float[] forced = LOGITS.clone();
            var hot = View.of(new SamplingParams(2, 1, 0, 0, 0, 0, 1, (long) draw, 0, Map.of(5, 100f)));
            new LogitBias().process(forced, hot);
            assertEquals(5, sampler.sample(forced, hot, new SplittableRandom(draw)), "temperature 2, draw " + draw);
        }
    }

    @Test
    void anotherSeedKeepsTheBias() {
        SamplingParams reseeded = biased(1, Map.of(3, -100f)).withSeed(8L);
        assertEquals(8L, reseeded.seed());
        assertEquals(Map.of(3, -100f), reseeded.logitBias());
        assertEquals(biased(1, Map.of(3, -100f)), reseeded.withSeed(7L));
    }

    @Test
    void theParametersRefuseANegativeIdOrAnInfiniteBias() {
        assertThrows(IllegalArgumentException.class, () -> biased(1, Map.of(-1, 1f)));
        assertThrows(IllegalArgumentException.class, () -> biased(1, Map.of(1, Float.NEGATIVE_INFINITY)));
    }
}
