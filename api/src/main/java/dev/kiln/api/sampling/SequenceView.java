package dev.kiln.api.sampling;

/**
 * What a sampler or logits processor may know of the sequence it is choosing a token for.
 */
public interface SequenceView {
    /** The prompt's token ids. */
    int[] promptTokens();

    /** Tokens generated so far, oldest first. */
    int[] outputTokens();

    /** The request's sampling parameters. */
    SamplingParams params();
}
