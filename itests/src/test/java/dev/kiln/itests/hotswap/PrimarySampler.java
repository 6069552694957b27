package dev.kiln.itests.hotswap;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.sampling.Sampler;
import dev.kiln.api.sampling.SequenceView;
import java.util.random.RandomGenerator;
import org.osgi.service.component.annotations.Component;

/** The higher-ranked of two samplers, shipped in its own bundle; always picks token 2. */
@Component(property = {KilnProperties.NAME + "=primary", "service.ranking:Integer=20"})
public class PrimarySampler implements Sampler {
    public static final int TOKEN = 2;

    @Override
    public int sample(float[] logits, SequenceView sequence, RandomGenerator random) {
        return TOKEN;
    }

    @Override
    public float[] probabilities(float[] logits, SequenceView sequence) {
        return logits;
    }
}
