package dev.kiln.sampler.penalties;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.sampling.LogitsProcessor;
import dev.kiln.api.sampling.SequenceView;
import org.osgi.service.component.annotations.Component;

/**
 * The repetition penalty (CTRL; vLLM and transformers semantics): every distinct token that occurs in the prompt
 * or the output has its logit divided by the penalty when positive and multiplied by it when not, once however
 * often it occurs. A penalty above 1 discourages repetition, below 1 encourages it.
 *
 * <p>Ranked before the presence and frequency penalties, as vLLM applies it first.
 */
@Component(service = LogitsProcessor.class,
        property = {KilnProperties.NAME + "=repetition-penalty", "service.ranking:Integer=300"})
public final class RepetitionPenalty implements LogitsProcessor {
    private final ThreadLocal<TokenMarks> marks = ThreadLocal.withInitial(TokenMarks::new);

    /** The processor; the penalty comes from each request's parameters. */
    public RepetitionPenalty() {}

    @Override
    public boolean appliesTo(SequenceView sequence) {
        return sequence.params().repetitionPenalty() != 1.0;
    }

    @Override
    public void process(float[] logits, SequenceView sequence) {
        float penalty = (float) sequence.params().repetitionPenalty();
        if (penalty == 1f) return;
        TokenMarks seen = marks.get();
        int[] prompt = sequence.promptTokens();
        int[] output = sequence.outputTokens();
        try {
            penalise(logits, prompt, penalty, seen);
            penalise(logits, output, penalty, seen);
        } finally {
            seen.clear(prompt);
            seen.clear(output);
        }
    }

    private static void penalise(float[] logits, int[] tokens, float penalty, TokenMarks seen) {
        for (int t : tokens) {
            if (t < logits.length && seen.mark(t)) {
                float l = logits[t];
                logits[t] = l > 0 ? l / penalty : l * penalty;
            }
        }
    }
}
