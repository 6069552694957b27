package dev.kiln.sampler.penalties;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.sampler.View;
import org.junit.jupiter.api.Test;

/** The three penalties, exactly, with vLLM's rules for which tokens count. */
class PenaltiesTest {
    private static final float[] LOGITS = {0.5f, 2f, -1f, 4f, 1f, -3f};

    private static SamplingParams penalties(double presence, double frequency, double repetition) {
        return new SamplingParams(1, 1, 0, 0, presence, frequency, repetition, null, 0);
    }

    @Test
    void repetitionDividesPositiveAndMultipliesNegativeLogitsOfPromptAndOutputTokensOnce() {
        var view = new View(new int[] {1, 1, 2}, new int[] {3, 1, 3}, penalties(0, 0, 2));
        var processor = new RepetitionPenalty();
        assertTrue(processor.appliesTo(view));
        float[] logits = LOGITS.clone();
        processor.process(logits, view);
        assertArrayEquals(new float[] {0.5f, 1f, -2f, 2f, 1f, -3f}, logits);

        // The marks of the previous call are gone: a second sequence is penalised on its own tokens only.
        var other = new View(new int[] {5}, new int[] {0}, penalties(0, 0, 0.5));
        float[] again = LOGITS.clone();
        processor.process(again, other);
        assertArrayEquals(new float[] {1f, 2f, -1f, 4f, 1f, -1.5f}, again);
    }

    @Test
    void repetitionPenaltyOfOneDoesNotApply() {
        assertFalse(new RepetitionPenalty().appliesTo(new View(new int[] {1}, new int[] {2}, penalties(0, 0, 1))));
    }

    @Test
    void frequencySubtractsThePenaltyPerOccurrenceInTheOutputOnly() {
        var view = new View(new int[] {4, 4}, new int[] {3, 3, 1, 3}, penalties(0, 0.5, 1));
        var processor = new FrequencyPenalty();
        assertTrue(processor.appliesTo(view));
        float[] logits = LOGITS.clone();
        processor.process(logits, view);
        assertArrayEquals(new float[] {0.5f, 1.5f, -1f, 2.5f, 1f, -3f}, logits);
    }

    @Test
    void presenceSubtractsThePenaltyOncePerDistinctOutputToken() {
        var view = new View(new int[] {4, 4}, new int[] {3, 3, 1, 3}, penalties(0.75, 0, 1));
        var processor = new PresencePenalty();
        assertTrue(processor.appliesTo(view));
        float[] logits = LOGITS.clone();
        processor.process(logits, view);
        assertArrayEquals(new float[] {0.5f, 1.25f, -1f, 3.25f, 1f, -3f}, logits);
        float[] again = LOGITS.clone();
        processor.process(again, view);
        assertArrayEquals(logits, again);
    }

    @Test
    void outputPenaltiesDoNotApplyBeforeTheFirstTokenOrAtZero() {
        var noOutput = new View(new int[] {1, 2}, new int[0], penalties(1, 1, 1));
        assertFalse(new PresencePenalty().appliesTo(noOutput));
        assertFalse(new FrequencyPenalty().appliesTo(noOutput));
        var zero = new View(new int[] {1}, new int[] {2}, penalties(0, 0, 1));
        assertFalse(new PresencePenalty().appliesTo(zero));
        assertFalse(new FrequencyPenalty().appliesTo(zero));
    }

    @Test
    void negativePenaltiesEncourageTheTokens() {
        var view = new View(new int[] {0}, new int[] {2, 2}, penalties(-1, -0.5, 1));
        float[] logits = LOGITS.clone();
        new FrequencyPenalty().process(logits, view);
        new PresencePenalty().process(logits, view);
        assertArrayEquals(new float[] {0.5f, 2f, 1f, 4f, 1f, -3f}, logits);
    }
}
