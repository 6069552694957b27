package dev.kiln.api.sampling;

/**
 * What a sampler or logits processor may know of the sequence it is choosing a token for.
 */
public interface SequenceView {
    /** The prompt's token ids. */
    int[] promptTokens();

    /**
     * Tokens generated so far, oldest first. While an engine overlaps steps (see
     * {@link dev.kiln.api.backend.ComputeBackend#overlapsSteps}) the last one may be a negative
     * {@linkplain dev.kiln.api.backend.PendingTokens#placeholder placeholder} for a token the device is still
     * choosing, when {@link LogitsProcessor#appliesTo} is asked: it counts, but its value is not known yet. Whatever
     * is given logits to process or sample sees chosen tokens only.
     */
    int[] outputTokens();

    /** The request's sampling parameters. */
    SamplingParams params();

    /**
     * The model's end-of-sequence tokens, for a processor that must let the sequence end (a grammar whose text is
     * complete); empty when the engine does not say.
     */
    default int[] endOfSequenceTokens() {
        return new int[0];
    }
}
