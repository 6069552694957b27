package dev.kiln.backend.cuda.internal;

import java.util.Arrays;

/**
 * The work of {@code kiln_prefill_attention_bf16}, the tensor-core attention for runs of many query tokens: the
 * batch's tokens from {@code first} on, cut into tiles of at most {@link #TOKENS} consecutive tokens of one sequence,
 * as (first token, token count) pairs. One block of the kernel takes a tile and a KV head, and reads the sequence's
 * cached entries once for all its tokens, where the split kernel reads them once per token.
 *
 * <p>Only a suffix of the batch goes this way, so that one launch of the split kernel can keep the tokens before it
 * (the engine's scheduler puts decoding and verifying sequences first and prompt chunks after them): the suffix is
 * the longest run of whole sequences at the end of the batch that each bring at least {@code minRun} tokens.
 *
 * <p>A tile's keys may also be cut into chunks, a block each ({@link #splits}), so that a short chunk of a long
 * prompt still gives the device enough blocks; the chunks' partial results are then merged by
 * {@code kiln_paged_attention_combine}.
 *
 * @param first   the batch's first token that the tiles cover; the tokens before it take the split kernel
 * @param tiles   (first token, count) pairs
 * @param longest the longest context among the tiles' sequences (the keys the farthest tile reads)
 */
public record PrefillTiles(int first, int[] tiles, int longest) {
    /** Query tokens of one tile: the row count of one tensor-core product (kernels.cu: PREFILL_TOKENS). */
    public static final int TOKENS = 16;

    /** Widest head the kernel takes (its keys and values alike; kernels.cu: PREFILL_HEAD). */
    public static final int HEAD_DIM = 128;

    /** Most query heads a KV head: a warp each in one block (kernels.cu: PREFILL_MAX_GROUP). */
    public static final int MAX_GROUP = 8;

    /**
     * Most query heads a KV head of {@code kiln_prefill_attention_bf16}, whose threads may use 168 registers; more
     * take {@code kiln_prefill_attention_wide_bf16} (128), so that two blocks still fit an SM.
     */
    public static final int MAX_NARROW_GROUP = 6;

    /** Keys (and values) of one cache tile in shared memory (kernels.cu: PREFILL_KEYS). */
    static final int KEYS = 32;

    /** Fewest keys a context chunk takes: below, the merge costs more than the parallel blocks gain. */
    static final int MIN_SPLIT_KEYS = 256;

    /** Blocks an SM the splits aim at (two fit one up to 8 warps a block). */
    private static final int BLOCKS_PER_SM = 2;

    /** A cut of every tile's keys into {@code splits} chunks of {@code chunk} keys (a multiple of 32). */
    public record ContextSplit(int splits, int chunk) {}

    /**
     * How to cut the tiles' keys for this many KV heads and SMs: into as many chunks of at least
     * {@link #MIN_SPLIT_KEYS} keys as keep the grid within two blocks an SM; one chunk (no merge) when the tiles
     * already fill it.
     */
    public ContextSplit splits(int kvHeads, int multiprocessors) {
        long blocks = (long) count() * kvHeads;
        long wanted = Math.max(1, (long) BLOCKS_PER_SM * multiprocessors / blocks);
        int splits = (int) Math.min(wanted, Math.max(1, longest / MIN_SPLIT_KEYS));
        return cut(Math.ceilDiv(Math.ceilDiv(longest, splits), KEYS) * KEYS);
    }

    /** Every tile's keys in chunks of {@code chunk} keys (a multiple of 32): as many as the longest context needs. */
    public ContextSplit cut(int chunk) {
        return new ContextSplit(Math.ceilDiv(longest, chunk), chunk);
    }

    /** bf16 elements a shared-memory row: a head and 8 of padding (kernels.cu: PREFILL_ROW). */
    private static final int ROW = HEAD_DIM + 8;

    /**
     * Dynamic shared memory of a block for this many query heads a KV head: two stages of a key tile and a value
     * tile, then each warp's 16 query rows as hi and lo bf16 parts (104,448 bytes at 8, 87,040 at 6: two blocks fit
     * an SM of 228 KiB).
     */
    public static int sharedBytes(int group) {
        // (Kernels grants the largest group the device's shared memory allows; see prefillAttentionAvailable.)
        return 2 * (4 * KEYS * ROW + group * 2 * TOKENS * ROW);
    }

    public PrefillTiles {
        tiles = tiles.clone();
    }

    @Override
    public int[] tiles() {
        return tiles.clone();
    }

    /** Tiles, each one block per KV head. */
    public int count() {
        return tiles.length / 2;
    }

    /** Tokens the tiles cover: the batch's from {@link #first} on. */
    public int tokens() {
        int sum = 0;
        for (int i = 1; i < tiles.length; i += 2) sum += tiles[i];
        return sum;
    }

    /** Bytes of the partial records a cut into several chunks writes: 128 sums, the maximum, the sum, 2 spare. */
    public long partialBytes(int heads, ContextSplit split) {
        return split.splits() == 1 ? 0 : (long) tokens() * heads * split.splits() * (HEAD_DIM + 4) * Float.BYTES;
    }

    /** Whether the kernel takes a cache of this geometry: bf16 entries of 128-wide keys and values kept apart. */
    public static boolean fits(int heads, int kvHeads, int keyDim, int valueDim, boolean valuesInKeys, boolean bf16) {
        return bf16 && !valuesInKeys && keyDim == HEAD_DIM && valueDim == HEAD_DIM && kvHeads > 0
                && heads % kvHeads == 0 && heads / kvHeads <= MAX_GROUP;
    }

    /**
     * The suffix of this batch that the tensor-core kernel takes, or null where no sequence at the end brings
     * {@code minRun} tokens. (However few its tiles, the kernel beat the split kernel in every case measured once it
     * cuts their contexts: 16 tokens at context 8,192 5x, 128 tokens at context 128 1.3x.)
     *
     * @param batch  the packed batch (its per-token sequence numbers and positions)
     * @param minRun fewest tokens a sequence of the suffix brings
     */
    public static PrefillTiles of(AttentionBatch batch, int minRun) {
        int tokens = batch.tokens();
        int[] packed = batch.packed();
        int at = batch.sequenceOffset();
        int first = tokens;
        // Walk the batch's runs of one sequence backwards while each is long enough.
        while (first > 0) {
            int sequence = packed[at + first - 1];
            int start = first - 1;
            while (start > 0 && packed[at + start - 1] == sequence) start--;
            if (first - start < minRun) break;
            first = start;
        }
        if (first == tokens) return null;
        int longest = 0;
        for (int t = first; t < tokens; t++) longest = Math.max(longest, packed[batch.positionOffset() + t] + 1);
        int[] tiles = new int[2 * (tokens - first)];
        int count = 0;
        for (int t = first; t < tokens; ) {
            int end = t;
            while (end < tokens && packed[at + end] == packed[at + t] && end - t < TOKENS) end++;
            tiles[2 * count] = t;
            tiles[2 * count + 1] = end - t;
            count++;
            t = end;
        }
        return new PrefillTiles(first, Arrays.copyOf(tiles, 2 * count), longest);
    }
}
