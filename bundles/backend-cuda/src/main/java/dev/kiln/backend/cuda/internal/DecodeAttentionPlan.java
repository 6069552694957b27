package dev.kiln.backend.cuda.internal;

/**
 * How {@code kiln_decode_attention_bf16} covers a decode step (every token its sequence's one query token, bf16
 * cache, heads of {@link #HEAD_DIM}, at most {@link #MAX_GROUP} query heads per KV head): into how many splits each
 * token's context is cut, each one block of {@link #THREADS} threads, the splits of a (token, KV head) one thread
 * block cluster that merges them in its shared memory.
 *
 * <p>A function of the token count, the KV heads, the context bucket and the device alone, as
 * {@link SplitAttentionPlan} is, so that steps within one bucket replay the same graph.
 *
 * <p>Why this kernel where it fits: at batch 1 a step waits on attention in every layer, and there the split
 * kernel's barriers and shared-memory passes, not its bytes, cost the time. Measured on an H100, one batch-1 step of
 * the 1.5B shape in one graph ({@code time_decode_step.py}): context 256 in 8 splits 1.491 ms against 1.608 with the
 * split kernel (an attention kernel that does nothing: 1.380); 512 in 16 splits 1.499 against 1.616; 2048 in 16
 * splits of 128 keys 1.654 against 1.686 (64 splits merged by the combine kernel).
 *
 * @param splits chunks per token: blocks of one cluster (at most the device's largest cluster)
 * @param chunk  keys of one split: a multiple of {@link #KEYS_PER_PASS}, at most {@link #MAX_CHUNK}
 */
public record DecodeAttentionPlan(int splits, int chunk) {
    /** Threads of the kernel; must match DECODE_THREADS in the source. */
    public static final int THREADS = 256;
    /** The head size the kernel is written for (4 dimensions a lane); must match DECODE_DIM. */
    public static final int HEAD_DIM = 128;
    /** Most query heads per KV head; must match DECODE_GROUP. */
    public static final int MAX_GROUP = 8;
    /** Keys a block takes per pass (8 warps of 4). */
    public static final int KEYS_PER_PASS = 32;
    /**
     * Most keys a split walks: 4 passes. Longer chunks leave the block's loads one pass at a time while more splits
     * than a cluster holds do better through the split kernel (not measured beyond 128 keys a split).
     */
    public static final int MAX_CHUNK = 128;

    /** Whether the kernel serves the geometry (bf16 cache assumed). */
    public static boolean fits(int heads, int kvHeads, int keyDim, int valueDim, boolean valuesInKeys) {
        return !valuesInKeys && keyDim == HEAD_DIM && valueDim == HEAD_DIM && kvHeads > 0 && heads % kvHeads == 0
                && heads / kvHeads <= MAX_GROUP;
    }

    /**
     * Whether the kernel can fold in the rotary launch before it: from the head's start, and either halves of the
     * whole head or interleaved pairs (which lanes hold a pair's partner).
     */
    public static boolean foldsRotary(int rotaryOffset, int rotaryHalf, boolean interleaved) {
        return rotaryOffset == 0 && rotaryHalf > 0 && (interleaved ? 2 * rotaryHalf <= HEAD_DIM : rotaryHalf == HEAD_DIM / 2);
    }

    /**
     * The plan for a decode step, or null when the kernel should not take it: the most splits (a power of two) that
     * a cluster holds, that keep the grid in one wave of the device and leave chunks of at least one pass; null
     * when the chunk would then exceed {@link #MAX_CHUNK}.
     *
     * @param largestCluster the device's largest cluster of the kernel (1 without clusters: one split only)
     */
    public static DecodeAttentionPlan of(int tokens, int kvHeads, int contextBucket, int multiprocessors,
                                         int largestCluster) {
        if (tokens < 1 || kvHeads < 1 || Integer.bitCount(contextBucket) != 1) {
            throw new IllegalArgumentException("invalid decode batch: " + tokens + " tokens, " + kvHeads
                    + " KV heads, context bucket " + contextBucket);
        }
        int splits = SplitAttentionPlan.clusterSplits((long) tokens * kvHeads, contextBucket, KEYS_PER_PASS,
                multiprocessors, largestCluster);
        int chunk = contextBucket / splits;
        if (chunk > MAX_CHUNK || chunk % KEYS_PER_PASS != 0) return null;
        return new DecodeAttentionPlan(splits, chunk);
    }
}
