package dev.kiln.sampler.bias;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.sampling.LogitsProcessor;
import dev.kiln.api.sampling.SequenceView;
import java.util.Map;
import org.osgi.service.component.annotations.Component;

/**
 * OpenAI's {@code logit_bias}: each listed token's logit is raised or lowered by its bias before the penalties and
 * the sampler (ranked above the penalties, as vLLM orders them), so -100 keeps a token from being chosen and 100
 * makes it all but certain, at any temperature and under greedy decoding alike.
 */
@Component(service = LogitsProcessor.class,
        property = {KilnProperties.NAME + "=logit-bias", "service.ranking:Integer=400"})
public final class LogitBias implements LogitsProcessor {
    /** The processor; the biases come from each request's parameters. */
    public LogitBias() {}

    @Override
    public boolean appliesTo(SequenceView sequence) {
        return !sequence.params().logitBias().isEmpty();
    }

    @Override
    public void process(float[] logits, SequenceView sequence) {
        for (Map.Entry<Integer, Float> bias : sequence.params().logitBias().entrySet()) {
            int token = bias.getKey();
            // Ids past this model's output rows cannot be chosen anyway (the API refuses ids past the vocabulary).
            if (token < logits.length) logits[token] += bias.getValue();
        }
    }
}
