package dev.kiln.itests.hotswap;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.sampling.Sampler;
import dev.kiln.api.sampling.SequenceView;
import java.util.random.RandomGenerator;
import org.osgi.service.component.annotations.Component;

/** The lower-ranked of two samplers, shipped in its own bundle; always picks token 1. */
@Component(property = {KilnProperties.NAME + "=fallback", "service.ranking:Integer=10"})
public class FallbackSampler implements Sampler {
    public static final int TOKEN = 1;

    @Override
    public int sample(float[] logits, SequenceView sequence, RandomGenerator random) {
        return TOKEN;
    }

    @Override
    public float[] probabilities(float[] logits, SequenceView sequence) {
        return logits;
    }
}
