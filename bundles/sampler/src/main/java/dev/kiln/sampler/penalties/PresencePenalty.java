package dev.kiln.sampler.penalties;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.sampling.LogitsProcessor;
import dev.kiln.api.sampling.SequenceView;
import org.osgi.service.component.annotations.Component;

/**
 * The presence penalty (OpenAI and vLLM semantics): every distinct token that occurs in the output so far has its
 * logit lowered by the penalty, once. Prompt tokens do not count.
 */
@Component(service = LogitsProcessor.class,
        property = {KilnProperties.NAME + "=presence-penalty", "service.ranking:Integer=100"})
public final class PresencePenalty implements LogitsProcessor {
    private final ThreadLocal<TokenMarks> marks = ThreadLocal.withInitial(TokenMarks::new);

    /** The processor; the penalty comes from each request's parameters. */
    public PresencePenalty() {}

    @Override
    public boolean appliesTo(SequenceView sequence) {
        return sequence.params().presencePenalty() != 0 && sequence.outputTokens().length > 0;
    }

    @Override
    public void process(float[] logits, SequenceView sequence) {
        float penalty = (float) sequence.params().presencePenalty();
        if (penalty == 0f) return;
        TokenMarks seen = marks.get();
        int[] output = sequence.outputTokens();
        try {
            for (int t : output) {
                if (t < logits.length && seen.mark(t)) logits[t] -= penalty;
            }
        } finally {
            seen.clear(output);
        }
    }
}
