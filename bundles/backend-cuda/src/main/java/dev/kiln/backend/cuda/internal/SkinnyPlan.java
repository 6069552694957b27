package dev.kiln.backend.cuda.internal;

/**
 * How {@code kiln_skinny} (products of a few tokens on the tensor cores, bf16 or quantized weights, see kernels.cu) is
 * launched for a shape: which entry (token tiles of 8, row groups a block), how many row tiles, and how many blocks of a thread block
 * cluster split each tile's columns. The rules follow measurements on an H100 (the 1.5B shape's products at 4 to 32
 * tokens, {@code check_kernels.py}'s skinny_timing section).
 *
 * @param tokenTiles n8 tiles of tokens of the entry: 1, 2 or 4
 * @param rowGroups  groups of 32 rows (16 gate/up pairs) in a block; the activations each warp loads serve as many
 * @param tiles      blocks along x
 * @param cluster    blocks along y, one cluster: each sums a part of the columns
 * @param tokenGroups warps the token tiles are dealt to: 1, or 2 for the 4-tile INT4 and FP8 entries (their chunk
 *                   sums leave no registers for four tiles; the second warp's weight reads hit L2)
 */
public record SkinnyPlan(int tokenTiles, int rowGroups, int tiles, int cluster, int tokenGroups) {
    /** Most tokens the entries take: from 33 on their activation reads outweigh the weights', and cuBLAS is faster. */
    public static final int MAX_TOKENS = 32;
    /** Warps of a block; must match SKINNY_WARPS in the source. */
    public static final int WARPS = 8;
    /** Columns of a chunk, the unit a warp streams; must match SKINNY_CHUNK in the source. */
    public static final int CHUNK = 64;
    /** Shared memory a block may take so that two fit an SM (the entries are built for two blocks an SM). */
    static final int MAX_SHARED = 99 * 1024;
    /** Largest cluster: the portable size. */
    public static final int MAX_CLUSTER = 8;

    /** Token tiles of the entry for this many tokens (1 to {@link #MAX_TOKENS}). */
    static int tokenTiles(int tokens) {
        return tokens <= 8 ? 1 : tokens <= 16 ? 2 : 4;
    }

    /** Whether a product of this shape can take the entries: whole chunks of columns, few enough tokens. */
    public static boolean takes(int tokens, int columns) {
        return tokens >= 1 && tokens <= MAX_TOKENS && columns > 0 && columns % CHUNK == 0;
    }

    /** Dynamic shared memory of a launch: the tree over a block's column ranges, the cluster's pushes into block 0. */
    static int sharedBytes(int tokenTiles, int rowGroups, int cluster) {
        return sharedBytes(tokenTiles, rowGroups, cluster, 1);
    }

    static int sharedBytes(int tokenTiles, int rowGroups, int cluster, int tokenGroups) {
        int groups = rowGroups * tokenGroups, fragment = 2 * (tokenTiles / tokenGroups) * 32 * 16;
        return WARPS / groups / 2 * groups * fragment + (cluster - 1) * groups * fragment;
    }

    /** The most blocks a tile's columns may be split over: at least a chunk a warp, shared memory for two blocks an SM. */
    static int largestCluster(int tokenTiles, int rowGroups, int columns, int largest) {
        return largestCluster(tokenTiles, rowGroups, columns, largest, 1);
    }

    static int largestCluster(int tokenTiles, int rowGroups, int columns, int largest, int tokenGroups) {
        int cluster = Math.max(1, Math.min(largest, columns / CHUNK / (WARPS / (rowGroups * tokenGroups))));
        while (cluster > 1 && sharedBytes(tokenTiles, rowGroups, cluster, tokenGroups) > MAX_SHARED) cluster--;
        return cluster;
    }

    /**
     * The plan of a plain product of segments (q, k and v, say) of these row counts: two row groups for long rows (the
     * down product, where the activations of a tile are many), else one (the three-segment form needs every segment
     * but the last to fill whole tiles, else one row group); clusters only where the tiles are fewer than two an SM.
     * Measured at 32 tokens: down 22.9 us in 24 tiles of two groups split 8 ways against 28.1 in 48 of one; o 8.2 us
     * in 48 tiles of one group split 3 ways against 9.5 in 24 of two.
     *
     * @param largest the largest cluster the device launches (1 without clusters)
     * @param tokenGroups whether 4 token tiles take the two-token-group entry (INT4, FP8)
     */
    public static SkinnyPlan of(int[] segmentRows, int columns, int tokens, int multiprocessors, int largest,
                                boolean tokenGroups) {
        int tokenTiles = tokenTiles(tokens), groups = tokenGroups && tokenTiles == 4 ? 2 : 1;
        int rowGroups;
        if (groups == 2) {
            rowGroups = 4; // the only two-token-group entry
        } else {
            rowGroups = columns / CHUNK > 32 ? Math.min(tokenTiles, 2) : 1;
            for (int i = 0; i < segmentRows.length - 1; i++) {
                if (segmentRows[i] % (32 * rowGroups) != 0) rowGroups = 1;
            }
        }
        int tiles = 0;
        for (int rows : segmentRows) tiles += Math.ceilDiv(rows, 32 * rowGroups);
        int cluster = tiles >= 2 * multiprocessors ? 1 : largestCluster(tokenTiles, rowGroups, columns, largest, groups);
        return new SkinnyPlan(tokenTiles, rowGroups, tiles, cluster, groups);
    }

    /**
     * The plan of a gated MLP (gate and up rows in pairs, as many row groups as token tiles): clusters only where the
     * tiles are fewer than the SMs (at 32 tokens 140 tiles took 41 us alone, 50 split in two; one or two row groups
     * took 46-49 us).
     */
    public static SkinnyPlan gated(int rows, int columns, int tokens, int multiprocessors, int largest,
                                   boolean tokenGroups) {
        int tokenTiles = tokenTiles(tokens), groups = tokenGroups && tokenTiles == 4 ? 2 : 1;
        int tiles = Math.ceilDiv(rows, 16 * tokenTiles);
        int cluster = tiles >= multiprocessors ? 1 : largestCluster(tokenTiles, tokenTiles, columns, largest, groups);
        return new SkinnyPlan(tokenTiles, tokenTiles, tiles, cluster, groups);
    }

    /** Whether every segment but the last fills whole tiles of this plan (what a fused launch of several needs). */
    boolean tilesWhole(int rows) {
        return rows % (32 * rowGroups) == 0;
    }

    /** Dynamic shared memory of this plan's launch. */
    public int sharedBytes() {
        return sharedBytes(tokenTiles, rowGroups, cluster, tokenGroups);
    }

    /** The name of the plain entry of this plan for weights of a format ("bf16", "int8", "int4", "fp8"). */
    String entry(String format) {
        return "kiln_skinny_" + format + suffix();
    }

    /** The name of the gated entry of this plan for weights of a format. */
    String gatedEntry(String format) {
        return "kiln_skinny_silu_" + format + suffix();
    }

    private String suffix() {
        return "_n" + tokenTiles + "_r" + rowGroups + (tokenGroups > 1 ? "_t" + tokenGroups : "");
    }
}
