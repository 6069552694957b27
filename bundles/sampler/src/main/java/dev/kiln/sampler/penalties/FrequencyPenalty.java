package dev.kiln.sampler.penalties;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.sampling.LogitsProcessor;
import dev.kiln.api.sampling.SequenceView;
import org.osgi.service.component.annotations.Component;

/**
 * The frequency penalty (OpenAI and vLLM semantics): each token's logit is lowered by the penalty times the number
 * of times it occurs in the output so far. Prompt tokens do not count.
 */
@Component(service = LogitsProcessor.class,
        property = {KilnProperties.NAME + "=frequency-penalty", "service.ranking:Integer=200"})
public final class FrequencyPenalty implements LogitsProcessor {
    /** The processor; the penalty comes from each request's parameters. */
    public FrequencyPenalty() {}

    @Override
    public boolean appliesTo(SequenceView sequence) {
        return sequence.params().frequencyPenalty() != 0 && sequence.outputTokens().length > 0;
    }

    @Override
    public void process(float[] logits, SequenceView sequence) {
        float penalty = (float) sequence.params().frequencyPenalty();
        if (penalty == 0f) return;
        // Subtracting once per occurrence is subtracting penalty × count.
        for (int t : sequence.outputTokens()) {
            if (t >= 0 && t < logits.length) logits[t] -= penalty;
        }
    }
}
