package dev.kiln.engine;

/**
 * Which speculative proposer an engine drafts with and how much.
 *
 * @param proposer             the {@code kiln.name} of the proposer, or null for no speculation
 * @param numSpeculativeTokens draft tokens per sequence and step (the k of the k + 1 tokens verified)
 * @param maxBatch             drafting runs only in steps whose running batch has at most this many sequences:
 *                             above it, verification costs more than the accepted tokens save
 */
public record SpeculationSettings(String proposer, int numSpeculativeTokens, int maxBatch) {
    /** Default draft tokens per step. */
    public static final int DEFAULT_NUM_SPECULATIVE_TOKENS = 3;
    /**
     * Default batch size above which speculation pauses. On the 2-core CPU machines, verifying k + 1 tokens per
     * sequence stops paying between 4 and 8 sequences (docs/benchmarks.md); a GPU, still bound by reading weights
     * at larger batches, gains from a higher value.
     */
    public static final int DEFAULT_MAX_BATCH = 4;
    /** No speculation. */
    public static final SpeculationSettings OFF = new SpeculationSettings(null, DEFAULT_NUM_SPECULATIVE_TOKENS,
            DEFAULT_MAX_BATCH);

    public SpeculationSettings {
        if (proposer != null && proposer.isBlank()) proposer = null;
        if (numSpeculativeTokens < 1) {
            throw new IllegalArgumentException("num-speculative-tokens must be positive, got " + numSpeculativeTokens);
        }
        if (maxBatch < 0) throw new IllegalArgumentException("speculative-max-batch must be >= 0, got " + maxBatch);
    }

    /** The named proposer with the default numbers. */
    public static SpeculationSettings of(String proposer, int numSpeculativeTokens) {
        return new SpeculationSettings(proposer, numSpeculativeTokens, DEFAULT_MAX_BATCH);
    }
}
