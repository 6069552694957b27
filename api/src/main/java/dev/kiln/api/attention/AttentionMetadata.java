package dev.kiln.api.attention;

/**
 * Where the query tokens of one batched forward sit: several sequences, each contributing any number of query
 * tokens (a prefill chunk, one decode token, or k+1 tokens to verify a speculative draft), each attending to its
 * own cached context plus its own earlier query tokens (causal).
 *
 * <p>Query tokens are laid out sequence after sequence; sequence {@code i} owns batch rows
 * {@code queryStart[i] .. queryStart[i+1]-1}, whose keys and values are written to {@code slotMapping} before
 * attending. Its context after the write has {@code contextLength[i]} tokens, whose slots are given by
 * {@code blockTables[i]}; query token j of sequence i is at position {@code contextLength[i] - queryLength(i) + j}.
 *
 * <p>A slot of -1 marks a padding token (an engine pads decode steps to sizes a backend replays): its key and value
 * are stored nowhere, it attends to whatever its context's slots hold, and its output is not meant to be read.
 *
 * @param queryStart    {@code numSequences + 1} prefix sums of query tokens per sequence
 * @param contextLength tokens in each sequence's context including this step's query tokens
 * @param blockTables   for each sequence, the KV cache block ids holding its context, in order
 * @param slotMapping   for each query token, the cache slot its key and value are written to, or -1 for none
 */
public record AttentionMetadata(int[] queryStart, int[] contextLength, int[][] blockTables, int[] slotMapping) {
    /** Number of sequences in the batch. */
    public int numSequences() {
        return contextLength.length;
    }

    /** Query tokens of sequence i. */
    public int queryLength(int i) {
        return queryStart[i + 1] - queryStart[i];
    }

    /** Query tokens in the whole batch. */
    public int numTokens() {
        return queryStart[queryStart.length - 1];
    }
}
