package dev.kiln.sampler;

import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.api.sampling.SequenceView;

/** A sequence as samplers and processors see it, for tests. */
public record View(int[] promptTokens, int[] outputTokens, SamplingParams params) implements SequenceView {
    /** No prompt or output, only parameters. */
    public static View of(SamplingParams params) {
        return new View(new int[] {0}, new int[0], params);
    }

    /** Sampling parameters with the given truncation and no penalties. */
    public static SamplingParams params(double temperature, double topP, int topK, double minP) {
        return new SamplingParams(temperature, topP, topK, minP, 0, 0, 1, null, 0);
    }
}
