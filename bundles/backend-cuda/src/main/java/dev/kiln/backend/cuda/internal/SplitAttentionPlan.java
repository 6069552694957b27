package dev.kiln.backend.cuda.internal;

import dev.kiln.api.tensor.DType;

/**
 * How {@code kiln_paged_attention_split} covers one batch: which query heads share a block, how many keys a block
 * stages in shared memory at a time, and into how many chunks each token's context is split.
 *
 * <p>Everything here is a function of the token count, the head geometry, the batch's context bucket (a power of
 * two, see {@link AttentionBatch#contextBucket()}) and the device's multiprocessor count, never of the exact
 * context lengths: consecutive decode steps whose longest context stays in one bucket launch identical grids with
 * identical arguments, which is what lets a captured CUDA graph be replayed for them.
 *
 * @param headsPerBlock query heads of one KV head's group served by one block (the whole group when it fits)
 * @param headBlocks    blocks per (token, KV head) needed to cover the group
 * @param tile          keys (and values) a block copies into shared memory at a time
 * @param chunk         keys of one split; a power of two, at least {@link #MIN_CHUNK} ({@link #WIDE_MIN_CHUNK} for
 *                      MLA's wide latent queries)
 * @param splits        chunks per token: the context bucket divided by the chunk
 * @param sharedBytes   dynamic shared memory of one block
 * @param clustered     whether a (token, KV head, head block)'s splits run as one thread block cluster and merge their
 *                      partial results through distributed shared memory, instead of writing partial records for
 *                      {@code kiln_paged_attention_combine} (see {@link #of(int, int, int, int, int, boolean, int, int,
 *                      int)})
 */
public record SplitAttentionPlan(int headsPerBlock, int headBlocks, int tile, int chunk, int splits, int sharedBytes,
                                 boolean clustered) {
    /** Threads of the split kernel; must match SPLIT_THREADS in the source. */
    public static final int THREADS = 256;
    /** float4 outputs one thread accumulates; must match SPLIT_MAX_OUTPUTS in the source. */
    public static final int MAX_OUTPUTS_PER_THREAD = 8;
    /** Threads of the combine kernel; must match COMBINE_THREADS in the source. */
    public static final int COMBINE_THREADS = 256;
    /** Largest tile: enough keys per shared-memory round to keep every thread's loads in flight. */
    public static final int MAX_TILE = 64;
    /** Smallest tile worth a block's four barriers per round. */
    public static final int MIN_TILE = 4;
    /**
     * Fewest keys per split. Below this a block spends more on its fixed costs (query load, partial record, the
     * combine's share) than on keys: on an H100 at batch 1, 16-key chunks were slower than 32-key ones at contexts
     * 256 and 2048 (9.4 vs 9.1 and 19.8 vs 14.4 us per layer), 64-key ones slower at both (12.5 and 16.3 us).
     */
    public static final int MIN_CHUNK = 32;
    /**
     * Fewest keys per split when a block's queries are wide: MLA's latent entries (576 elements, 8 query heads a block
     * for DeepSeek-V2-Lite) make each key several times the work of a 128-wide head group's, so a block has enough to do
     * with fewer keys, and short contexts then still spread over many SMs. System property
     * {@code kiln.cuda.attention.wideMinChunk} (a power of two, 4 to 32).
     */
    public static final int WIDE_MIN_CHUNK = Math.clamp(Integer.highestOneBit(
            Math.max(1, Integer.getInteger("kiln.cuda.attention.wideMinChunk", 8))), 4, MIN_CHUNK);
    /** Query elements per block (heads x key width) from which {@link #WIDE_MIN_CHUNK} applies to a latent cache. */
    static final int WIDE_QUERY_ELEMENTS = 2048;
    /** Most splits per token: bounds the combine kernel's shared memory (one float per split). */
    public static final int MAX_SPLITS = 4096;
    /**
     * Most blocks per multiprocessor the splits aim for: the grid gets more than one block per SM but at most two
     * (when the context allows that many splits). One block per SM leaves each SM waiting on one block's loads;
     * two overlap one block's loads with the other's arithmetic; more only add partial records to merge.
     */
    public static final int BLOCKS_PER_MULTIPROCESSOR = 2;
    /**
     * Most splits one cluster merges: the largest cluster Hopper runs (a non-portable size: 8 is the portable one);
     * must match SPLIT_MAX_CLUSTER in the source.
     */
    public static final int MAX_CLUSTER = 16;
    /**
     * Fewest keys per split when the splits merge inside a cluster: the merge costs no kernel of its own, so short
     * contexts take more, shorter splits than {@link #MIN_CHUNK}. Measured on an H100 at batch 1 (1.5B shape, one
     * decode step in one graph): context 256 in 16 clustered splits of 16 keys 1.593 ms a step, in 8 of 32 1.640, 8 of 32
     * merged by the combine kernel 1.643; context 512 in 16 of 32 clustered 1.670 against 1.711 with the combine.
     */
    public static final int CLUSTER_MIN_CHUNK = 16;
    /**
     * Most keys per split of a clustered plan: longer chunks serialise a block's tiles, and more splits than a cluster
     * holds then do better through the combine kernel (context 2048 at batch 1: 16 clustered splits of 128 keys
     * 2.18 ms a step, 64 splits of 32 merged by the kernel 1.72).
     */
    public static final int CLUSTER_MAX_CHUNK = 32;

    /** Shared memory budget of one block (the default limit, no opt-in needed). */
    static final int SHARED_BUDGET = Kernels.DEFAULT_SHARED_BYTES;

    /** Whether the split kernel can serve a cache geometry at all (with one query head per block). */
    public static boolean fits(int keyDim, int valueDim, boolean valuesInKeys) {
        return layout(1, keyDim, valueDim, valuesInKeys) != null;
    }

    /**
     * Cache elements the split kernel reads with one 16-byte load: 4 of an f32 cache, 8 of a bf16 one (widened to
     * f32 in shared memory, so the plan is the same for both).
     *
     * @throws IllegalArgumentException for element types the kernel does not read
     */
    public static int elementsPerLoad(DType cacheType) {
        return switch (cacheType) {
            case F32 -> 4;
            case BF16 -> 8;
            default -> throw new IllegalArgumentException("the split attention kernel reads F32 or BF16 caches, not " + cacheType);
        };
    }

    /**
     * Whether the split kernel can serve a cache geometry stored as {@code cacheType}: {@link #fits(int, int, boolean)},
     * with key and value rows of whole 16-byte loads ({@link #elementsPerLoad}).
     */
    public static boolean fits(int keyDim, int valueDim, boolean valuesInKeys, DType cacheType) {
        if (cacheType != DType.F32 && cacheType != DType.BF16) return false;
        int load = elementsPerLoad(cacheType);
        return keyDim % load == 0 && valueDim % load == 0 && fits(keyDim, valueDim, valuesInKeys);
    }

    /**
     * The plan for a batch, or null when the split kernel cannot serve the geometry (head sizes that are not whole
     * float4 rows, or rows too large for shared memory).
     *
     * @param tokens          query tokens of the batch
     * @param heads           query heads
     * @param kvHeads         key/value heads (divides heads)
     * @param contextBucket   the batch's context bucket: a power of two at least as large as every context
     * @param multiprocessors the device's SM count
     */
    public static SplitAttentionPlan of(int tokens, int heads, int kvHeads, int keyDim, int valueDim,
                                        boolean valuesInKeys, int contextBucket, int multiprocessors) {
        return of(tokens, heads, kvHeads, keyDim, valueDim, valuesInKeys, contextBucket, multiprocessors, 1);
    }

    /**
     * The plan for a batch, as {@link #of(int, int, int, int, int, boolean, int, int)}, with thread block clusters
     * of up to {@code largestCluster} blocks where the device runs them (compute capability 9.0 and later: 16, or the
     * portable 8 where the larger size is refused; 1 for none). A batch whose every (token, KV head, head block) row
     * with its splits fits the device in one wave (rows times splits at most the SM count) then splits its context
     * into at most that many (and at most {@link #MAX_CLUSTER}) chunks of {@link #CLUSTER_MIN_CHUNK} to
     * {@link #CLUSTER_MAX_CHUNK} keys, one cluster per row: the splits merge in the cluster's shared memory, with no
     * partial records and no combine kernel. Only for grouped-query caches (values apart from the keys): MLA's latent
     * geometry is slower in clusters (DeepSeek-V2-Lite shape at batch 1, context 256: 18.8 us a layer in 16 clustered
     * splits of 16 keys, 28.7 in 8 of 32, against 12.6 in 32 splits of 8 merged by the kernel). Larger batches and longer contexts keep the plan without clusters (at batch 32,
     * context 2048, 4 clustered splits took 158 us a layer against 92 us merged by the kernel).
     */
    public static SplitAttentionPlan of(int tokens, int heads, int kvHeads, int keyDim, int valueDim,
                                        boolean valuesInKeys, int contextBucket, int multiprocessors,
                                        int largestCluster) {
        if (tokens < 1 || kvHeads < 1 || heads % kvHeads != 0 || Integer.bitCount(contextBucket) != 1) {
            throw new IllegalArgumentException("invalid split attention batch: " + tokens + " tokens, " + heads + "/"
                    + kvHeads + " heads, context bucket " + contextBucket);
        }
        int[] shape = layout(heads / kvHeads, keyDim, valueDim, valuesInKeys);
        if (shape == null) return null;
        int headsPerBlock = shape[0], headBlocks = shape[1], tile = shape[2];
        long rows = (long) tokens * kvHeads * headBlocks;
        long wanted = (long) BLOCKS_PER_MULTIPROCESSOR * Math.max(1, multiprocessors) / rows;
        // Measured for MLA's latent cache only (values inside the keys); wide grouped-query heads keep MIN_CHUNK.
        int minChunk = valuesInKeys && (long) headsPerBlock * keyDim >= WIDE_QUERY_ELEMENTS ? WIDE_MIN_CHUNK : MIN_CHUNK;
        int mostSplits = Math.min(MAX_SPLITS, Math.max(1, contextBucket / minChunk));
        int splits = (int) Math.min(mostSplits, Long.highestOneBit(Math.max(1, wanted)));
        if (largestCluster > 1 && !valuesInKeys && valueDim <= keyDim) {
            // Clustered only when the most splits a cluster takes leave chunks of at most the cluster maximum.
            int clusterSplits = clusterSplits(rows, contextBucket, CLUSTER_MIN_CHUNK, multiprocessors, largestCluster);
            if (clusterSplits > 1 && contextBucket / clusterSplits <= CLUSTER_MAX_CHUNK) {
                int chunk = contextBucket / clusterSplits;
                int clusterTile = Math.min(tile, chunk);
                return new SplitAttentionPlan(headsPerBlock, headBlocks, clusterTile, chunk, clusterSplits,
                        sharedBytes(headsPerBlock, clusterTile, keyDim, valueDim, valuesInKeys), true);
            }
        }
        int chunk = contextBucket / splits;
        tile = Math.min(tile, chunk); // a block never holds more keys than its chunk
        return new SplitAttentionPlan(headsPerBlock, headBlocks, tile, chunk, splits,
                sharedBytes(headsPerBlock, tile, keyDim, valueDim, valuesInKeys), false);
    }

    /**
     * The most splits of a context bucket one cluster per row takes: a power of two, at most the device's largest
     * cluster (and {@link #MAX_CLUSTER}), chunks of at least {@code minChunk} keys, and the grid of {@code rows} rows in
     * one wave of the device's SMs; at least 1.
     */
    static int clusterSplits(long rows, int contextBucket, int minChunk, int multiprocessors, int largestCluster) {
        long oneWave = Math.max(1, multiprocessors / Math.max(1, rows));
        return (int) Math.min(Math.min(Integer.highestOneBit(Math.max(1, Math.min(MAX_CLUSTER, largestCluster))),
                Math.max(1, contextBucket / minChunk)), Long.highestOneBit(oneWave));
    }

    /** Dynamic shared memory of a block, laid out as the kernel's comment describes. */
    public static int sharedBytes(int headsPerBlock, int tile, int keyDim, int valueDim, boolean valuesInKeys) {
        long floats = (long) headsPerBlock * keyDim + 2L * keyDim + (valuesInKeys ? 0 : valueDim) + (long) tile * (keyDim + 4)
                + (valuesInKeys ? 0 : (long) tile * (valueDim + 4)) + (long) headsPerBlock * tile + 3L * headsPerBlock;
        return (int) Math.min(Integer.MAX_VALUE, floats * Float.BYTES);
    }

    /**
     * Bytes of the partial records the combine reads: one per (token, head, split) when there are several splits that
     * do not merge in a cluster.
     */
    public long partialBytes(int tokens, int heads, int valueDim) {
        return splits == 1 || clustered ? 0 : (long) tokens * heads * splits * (valueDim + 4) * Float.BYTES;
    }

    /** Blocks of one cluster along the grid's y (the splits), 1 without clusters. */
    public int clusterSize() {
        return clustered ? splits : 1;
    }

    /** Blocks of the split kernel along x: one per (token, KV head, head block). */
    public int rows(int tokens, int kvHeads) {
        return Math.multiplyExact(Math.multiplyExact(tokens, kvHeads), headBlocks);
    }

    /** Dynamic shared memory of the combine kernel merging this many splits (the split kernel's or the prefill's). */
    public static int combineSharedBytes(int splits) {
        return splits * Float.BYTES;
    }

    /**
     * {headsPerBlock, headBlocks, tile} for a group, or null. The group is cut into the fewest equal blocks whose
     * queries take at most half the budget and whose outputs fit the threads' registers; the tile is then the
     * largest power of two that fits the rest.
     */
    private static int[] layout(int group, int keyDim, int valueDim, boolean valuesInKeys) {
        if (keyDim < 4 || valueDim < 4 || keyDim % 4 != 0 || valueDim % 4 != 0 || group < 1) return null;
        if (valuesInKeys && valueDim > keyDim) return null;
        long outputLimit = (long) THREADS * MAX_OUTPUTS_PER_THREAD * 4 / valueDim;
        long queryLimit = SHARED_BUDGET / 2 / ((long) keyDim * Float.BYTES);
        int most = (int) Math.min(group, Math.min(outputLimit, queryLimit));
        if (most < 1) return null;
        int headBlocks = Math.ceilDiv(group, most);
        int headsPerBlock = Math.ceilDiv(group, headBlocks);
        int tile = MAX_TILE;
        while (tile >= MIN_TILE && sharedBytes(headsPerBlock, tile, keyDim, valueDim, valuesInKeys) > SHARED_BUDGET) {
            tile /= 2;
        }
        if (tile < MIN_TILE) return null;
        return new int[] {headsPerBlock, headBlocks, tile};
    }
}
