package dev.kiln.api.sampling;

/**
 * Rewrites one sequence's logits before a token is chosen (penalties, grammar masks, bias). Registered as a
 * service ({@code kiln.name}); the engine applies every registered processor, in ranking order, before the sampler.
 */
public interface LogitsProcessor {
    /**
     * Whether this processor changes anything for the sequence (lets the engine skip work, and choose the token on
     * the device when no processor applies). The sequence's last output token may still be a placeholder here (see
     * {@link SequenceView#outputTokens}): decide from the parameters and the counts, not from token values.
     */
    boolean appliesTo(SequenceView sequence);

    /** Modifies logits in place. */
    void process(float[] logits, SequenceView sequence);
}
