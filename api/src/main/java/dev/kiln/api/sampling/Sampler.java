package dev.kiln.api.sampling;

import java.util.random.RandomGenerator;

/**
 * Chooses the next token from logits (service property {@code kiln.name}). Implements temperature, top-k, top-p
 * and min-p; penalties are the {@link LogitsProcessor}s' job. Must be deterministic for a given random stream.
 */
public interface Sampler {
    /**
     * Chooses a token.
     *
     * @param logits   the logits row, which the sampler may overwrite
     * @param sequence the sequence and its parameters
     * @param random   the request's random stream (seeded when the request gave a seed)
     * @return the chosen token id
     */
    int sample(float[] logits, SequenceView sequence, RandomGenerator random);

    /**
     * The probability distribution the sampler draws from after temperature and truncation: the target and draft
     * distributions that speculative rejection sampling compares. Overwrites and returns {@code logits}.
     */
    float[] probabilities(float[] logits, SequenceView sequence);

    /**
     * Whether this sampler draws from exactly the distribution that
     * {@link dev.kiln.api.backend.ComputeBackend#sampleRows} defines (temperature, top-k, top-p, min-p; up to how ties
     * at a top-k or top-p boundary are cut), consuming one {@code nextDouble()} of the request's random stream per token: then an engine
     * may let the backend draw where the logits are (a GPU) instead of copying them to this sampler. A sampler with
     * other rules keeps the default, false, and is always called.
     */
    default boolean drawsLikeBackendSampling() {
        return false;
    }
}
