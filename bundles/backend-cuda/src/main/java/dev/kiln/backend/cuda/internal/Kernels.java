package dev.kiln.backend.cuda.internal;

import dev.kiln.backend.cuda.bindings.CudaDriver;
import java.lang.foreign.MemorySegment;

/**
 * The kernels of {@code kernels.cu}, loaded as one module per compilation unit ({@link KernelModules}), each behind a
 * method that knows its parameter list and launch shape. Arguments are not checked here: the backend checks
 * shapes before it calls.
 *
 * <p>Every kernel of the file waits for the kernel ahead of it on the device ({@code griddepcontrol.wait}) before
 * it touches memory, so all are launched as programmatic dependent launches where the recorder makes them: on a
 * Hopper GPU the next kernel's blocks start while the last wave of the one before drains, and the GEMVs issue their
 * first weight loads before they wait.
 */
public final class Kernels implements AutoCloseable {
    /** Threads per block of the element-wise and row kernels. */
    static final int THREADS = 256;
    /** Tokens up to which a matrix product streams the weight once per warp instead of calling cuBLAS. */
    public static final int GEMV_MAX_TOKENS = 8;
    /**
     * Tokens up to which a bf16 product takes the GEMV kernels rather than the paired cuBLAS GEMM (system property
     * {@code kiln.cuda.gemvMaxTokens}, 0 to {@link #GEMV_MAX_TOKENS}). Measured on an H100 (1.5B shape, whole decode
     * steps as graphs, overlapped): since the GEMVs take several rows per warp or block from two tokens on, 6 tokens
     * take 2.53 ms a step against 2.96 for cuBLAS (at 8 sequences, the padded size), 8 tokens 2.94 against 2.98.
     * (With one row per warp, 8 tokens had taken 5.2 ms against 3.4, and the limit was 4.)
     */
    public static final int GEMV_TOKEN_LIMIT = Math.clamp(Integer.getInteger("kiln.cuda.gemvMaxTokens", 8), 0, GEMV_MAX_TOKENS);
    /** Threads per block of the token-specialised GEMV: one weight row per warp, small blocks spread over every SM. */
    static final int GEMV_THREADS = 128;
    /** Threads of the attention kernel (keys scored per tile); must match ATTENTION_THREADS in the source. */
    public static final int ATTENTION_THREADS = 256;
    /** Value dimensions per attention thread; must match ATTENTION_VALUES_PER_THREAD in the source. */
    public static final int ATTENTION_VALUES_PER_THREAD = 8;
    /** The most dynamic shared memory a kernel may use without opting in. */
    public static final int DEFAULT_SHARED_BYTES = 48 * 1024;
    private static final int MAX_GRID = 1 << 20;

    private final CudaContext context;
    private final CudaDriver driver;
    private final KernelModules modules;
    private final MemorySegment add, addHalves, addHalvesRmsNorm, addBias, scale, siluMul, splitBf16, rmsNorm, addRmsNorm, embedBf16, embedF32, resolveTokens, copyColumns,
            gatherRows, scatterAddRows, rotary, rotary2, argmaxRows, argmaxSlices, argmaxMerge, samplePrepare, sampleTopK, sampleWeights, sampleTopP,
            sampleKept, samplePick, gemvBf16, gemvF32, writeKv, pagedAttention,
            pagedAttentionSplit, pagedAttentionCombine;
    /** The cache kernels for a bf16 KV cache: {@code kiln_write_kv_bf16}, {@code kiln_paged_attention(_split)_bf16}. */
    private final MemorySegment writeKvBf16, pagedAttentionBf16, pagedAttentionSplitBf16, decodeAttentionBf16,
            prefillAttentionBf16, prefillAttentionWideBf16;
    /** Largest groups of query heads a KV head the two prefill entries take here (0: none). */
    private final int prefillMaxGroup, prefillMaxWideGroup;
    /** Most blocks of a split attention cluster this device takes (1: no clusters); see {@link SplitAttentionPlan}. */
    private final int largestAttentionCluster;
    /** The token-specialised products of bf16 weights, 1 to {@link #GEMV_MAX_TOKENS} tokens. */
    private final TokenGemvs bf16Gemvs;
    /** The same of INT8 codes (scales after the codes), 1 to {@link #INT8_GEMV_MAX_TOKENS} tokens. */
    private final TokenGemvs int8Gemvs;
    /** The same of FP8 codes in blocks of 128 x 128 (scales after the codes), 1 to {@link #FP8_GEMV_MAX_TOKENS} tokens. */
    private final TokenGemvs fp8Gemvs;
    /**
     * The same of INT4 codes in groups of {@link #INT4_GEMV_GROUP} columns (scales after the codes), one token, without
     * the norm folded in (see {@link #INT4_GEMV_MAX_TOKENS}).
     */
    private final TokenGemvs int4Gemvs;
    /**
     * Most tokens of the INT8 token-specialised products; the tensor-core products take INT8 weights from
     * {@link #skinnyMinTokens} on (4 by default) where they can.
     */
    public static final int INT8_GEMV_MAX_TOKENS = 4;
    /** Rows a warp (split: a block) of the INT8 token products computes (INT8_ROWS in the source). */
    static final int INT8_ROWS = 4;
    /**
     * Most tokens that take them here (system property {@code kiln.cuda.int8GemvMaxTokens}, 0 to
     * {@link #INT8_GEMV_MAX_TOKENS}; 0 leaves every INT8 decode product to the format's own GEMVs, without fusions).
     */
    static final int INT8_GEMV_TOKENS = Math.clamp(Integer.getInteger("kiln.cuda.int8GemvMaxTokens", INT8_GEMV_MAX_TOKENS),
            0, INT8_GEMV_MAX_TOKENS);
    /**
     * Most tokens of the FP8 token-specialised products; the tensor-core products take FP8 weights from
     * {@link #skinnyMinTokens} on (4 by default) where they can.
     */
    public static final int FP8_GEMV_MAX_TOKENS = 4;
    /** The rows and columns of the scale blocks the FP8 token-specialised products take (FP8_BLOCK in the source). */
    public static final int FP8_GEMV_BLOCK = 128;
    /**
     * Most tokens that take them here (system property {@code kiln.cuda.fp8GemvMaxTokens}, 0 to
     * {@link #FP8_GEMV_MAX_TOKENS}; 0 leaves every FP8 decode product to the format's own GEMVs, without fusions).
     */
    static final int FP8_GEMV_TOKENS = Math.clamp(Integer.getInteger("kiln.cuda.fp8GemvMaxTokens", FP8_GEMV_MAX_TOKENS),
            0, FP8_GEMV_MAX_TOKENS);
    /**
     * Most tokens of the INT4 token-specialised products: one. A 16-byte chunk holds 32 INT4 columns, so per byte of
     * weights these kernels read twice INT8's activations from L1 and widen twice its codes, and they run short of
     * instruction issue where the bf16 ones wait on memory. Measured on an H100 (1.5B shape, groups of 128, graphs,
     * overlapped steps, alternated twice): batch 1 took 1.302 ms a step against 1.326 with the format's own GEMVs,
     * batch 2 1.76 against 1.42; folding the norm in as well (its scale and squares per chunk) took batch 1 to 1.376 and
     * batch 2 to 1.90, so these products leave the norm to its own kernel unless they stage x
     * ({@link #INT4_FOLDS_STAGED_NORM}).
     */
    public static final int INT4_GEMV_MAX_TOKENS = 1;
    /**
     * Whether INT4 products that stage their activations take a norm held before them in (system property
     * {@code kiln.cuda.int4FoldsStagedNorm}): staged, the norm's scale multiplies x once a block, not once a chunk.
     * H100, 1.5B shape, groups of 128, alternated twice: batch 1 1.252/1.247 -> 1.172/1.171 ms a step (the norms of
     * the gate/up products and lm_head folded; q/k/v, whose split product does not stage, keeps its norm kernel).
     */
    static final boolean INT4_FOLDS_STAGED_NORM =
            Boolean.parseBoolean(System.getProperty("kiln.cuda.int4FoldsStagedNorm", "true"));
    /** The group size (columns a scale covers) the INT4 token-specialised products take (INT4_GEMV_GROUP in the source). */
    public static final int INT4_GEMV_GROUP = 128;
    /**
     * Most tokens that take them here (system property {@code kiln.cuda.int4GemvMaxTokens}, 0 to
     * {@link #INT4_GEMV_MAX_TOKENS}; 0 leaves every INT4 decode product to the format's own GEMVs, without fusions).
     */
    static final int INT4_GEMV_TOKENS = Math.clamp(Integer.getInteger("kiln.cuda.int4GemvMaxTokens", INT4_GEMV_MAX_TOKENS),
            0, INT4_GEMV_MAX_TOKENS);
    /** Below this many rows a bf16 product splits each row over a block's warps (the H100 measured 1536 x 8960). */
    static final int SPLIT_BELOW_ROWS = 4096;
    /**
     * Most bytes of activations (4 a column and token) that a product with a warp per row (or gate/up row pair) stages
     * in shared memory, once a block instead of once a warp (system property {@code kiln.cuda.stagedMaxBytes}; 0
     * never): see dot_rows_staged in the source. The shared memory limits the blocks an SM holds. Measured on an H100
     * at 1,536 columns (the 1.5B shape).
     */
    static final int STAGED_MAX_BYTES = Math.max(0, Integer.getInteger("kiln.cuda.stagedMaxBytes", 32 * 1024));
    /** Most tokens of a staged product; must match STAGED_MAX_TOKENS in the source. */
    static final int STAGED_MAX_TOKENS = 4;
    /** Blocks per row of the argmax's first pass; must match ARGMAX_SLICES in the source. */
    public static final int ARGMAX_SLICES = 64;

    /**
     * The token-specialised products of one weight format ({@code kiln_gemv*_<format>_t<T>} in the source), index
     * {@code tokens - 1}; every family takes the same arguments, so the fusions below rewrite them alike:
     * <ul>
     *   <li>{@code plain}: one warp (or, {@code split}, one block) per row;</li>
     *   <li>{@code multi}, {@code multiSplit}: up to three products of the same activations in one launch (q, k and v;
     *       gate and up), the split form for fewer than {@link #SPLIT_BELOW_ROWS} rows in all;</li>
     *   <li>{@code silu}: gate and up products with the SiLU gating in one launch.</li>
     * </ul>
     * {@code rowGroups}: every warp (split: block) computes {@link #INT8_ROWS} rows of any segment, as INT8's do
     * (gemv_row_group in the source), instead of the bf16 rules of {@link #warpRows} and {@link #splitRows};
     * {@code foldsNorm}: a norm held just before is folded into the product (else it runs as its own kernel).
     */
    private record TokenGemvs(MemorySegment[] plain, MemorySegment[] split, MemorySegment[] multi, MemorySegment[] multiSplit,
                              MemorySegment[] silu, boolean rowGroups, boolean foldsNorm) {
        static TokenGemvs load(KernelModules modules, String format, int maxTokens, boolean rowGroups) {
            return load(modules, format, maxTokens, rowGroups, true);
        }

        static TokenGemvs load(KernelModules modules, String format, int maxTokens, boolean rowGroups, boolean foldsNorm) {
            TokenGemvs family = new TokenGemvs(new MemorySegment[maxTokens], new MemorySegment[maxTokens],
                    new MemorySegment[maxTokens], new MemorySegment[maxTokens], new MemorySegment[maxTokens], rowGroups,
                    foldsNorm);
            for (int t = 1; t <= maxTokens; t++) {
                family.plain[t - 1] = modules.function("kiln_gemv_" + format + "_t" + t);
                family.split[t - 1] = modules.function("kiln_gemv_split_" + format + "_t" + t);
                family.multi[t - 1] = modules.function("kiln_gemv3_" + format + "_t" + t);
                family.multiSplit[t - 1] = modules.function("kiln_gemv3_split_" + format + "_t" + t);
                family.silu[t - 1] = modules.function("kiln_gemv_silu_" + format + "_t" + t);
            }
            return family;
        }

        /** Rows a warp of {@code plain} computes. */
        int warpRowsOf(int tokens) {
            return rowGroups ? INT8_ROWS : warpRows(tokens);
        }

        /** Rows a block of {@code split} and {@code multiSplit} computes. */
        int splitRowsOf(int tokens) {
            return rowGroups ? INT8_ROWS : splitRows(tokens);
        }

        /** Rows a warp of {@code multi} computes. */
        int multiRows() {
            return rowGroups ? INT8_ROWS : 1;
        }

        /** Gate/up row pairs a warp of {@code silu} computes. */
        int siluPairsOf(int tokens) {
            return rowGroups ? INT8_ROWS / 2 : siluPairs(tokens);
        }

        /** Whether the function is this family's one-product kernel (warp or block per row) for {@code tokens}. */
        boolean isSingle(MemorySegment f, int tokens) {
            return tokens <= plain.length && (f.equals(plain[tokens - 1]) || f.equals(split[tokens - 1]));
        }

        /** Whether the function is this family's multi-segment kernel for {@code tokens}. */
        boolean isMulti(MemorySegment f, int tokens) {
            return tokens <= multi.length && (f.equals(multi[tokens - 1]) || f.equals(multiSplit[tokens - 1]));
        }

        /** Enters this family's one-product kernels into {@code singles} and its multi-segment ones into {@code multis}. */
        void index(java.util.Map<MemorySegment, TokenGemvs> singles, java.util.Map<MemorySegment, TokenGemvs> multis) {
            for (int t = 0; t < plain.length; t++) {
                singles.put(plain[t], this);
                singles.put(split[t], this);
                multis.put(multi[t], this);
                multis.put(multiSplit[t], this);
            }
        }
    }
    /**
     * The token GEMV families by function, of every token count: by their one-product kernels (warp or block per row)
     * and by their multi-segment kernels. The fusions ask which family the held launch is of.
     */
    private final java.util.Map<MemorySegment, TokenGemvs> singleFamilies = new java.util.HashMap<>();
    private final java.util.Map<MemorySegment, TokenGemvs> multiFamilies = new java.util.HashMap<>();
    /**
     * The few-token entries by name ({@code kiln_skinny[_silu]_<format>_n<T>_r<R>[_t2]}, see {@link SkinnyPlan}), and
     * what each one is, by function (the fusions ask that of the held launch); empty below compute capability 8.0.
     */
    private final java.util.Map<String, MemorySegment> skinnyEntries = new java.util.HashMap<>();
    private final java.util.Map<MemorySegment, SkinnyEntry> skinnyKinds = new java.util.HashMap<>();

    /** A few-token entry's weight format ("bf16", "int8", "int4", "fp8") and whether it is the gated MLP's. */
    private record SkinnyEntry(String format, boolean gated) {}
    /** Whether the tensor-core few-token products run here, and their largest cluster. */
    private final boolean skinnyAvailable;
    private final int largestSkinnyCluster;
    /**
     * Fewest tokens a bf16 product takes the tensor-core few-token kernels with (system property
     * {@code kiln.cuda.skinnyMinTokens}; the quantized formats have their own, below). Below it the GEMV kernels, whose fusions (the norm before a product, the
     * residual add after it) save two launches a layer: measured on an H100 (1.5B shape, graphs, overlapped steps),
     * batch 2 took 1.62 ms a step with the GEMVs against 1.95 with these, batch 4 1.96 against 1.97, batch 8 2.91
     * against 2.13.
     */
    public static final int SKINNY_MIN_TOKENS = Math.clamp(Integer.getInteger("kiln.cuda.skinnyMinTokens", 5), 1,
            SkinnyPlan.MAX_TOKENS + 1);
    /**
     * The same for INT8 and FP8 codes (system properties {@code kiln.cuda.skinnyMinTokens.int8} and {@code .fp8}):
     * their token GEMVs widen 16 codes a load in f32, and from 4 tokens on the widening and multiply-adds cost more
     * than the launches the fusions save. Measured on an H100 (1.5B shape, graphs, overlapped steps, alternated twice):
     * INT8 batch 4 took 1.79 / 1.89 ms a step with these against 2.09 / 1.98 with the token GEMVs, batch 3 1.71 against
     * 1.62, batch 2 1.66 against 1.38; FP8 batch 4 1.93 / 1.93 against 2.07 / 2.02, batch 3 1.75 against 1.71.
     */
    static final int SKINNY_MIN_TOKENS_INT8 = Math.clamp(Integer.getInteger("kiln.cuda.skinnyMinTokens.int8", 4), 1,
            SkinnyPlan.MAX_TOKENS + 1);
    static final int SKINNY_MIN_TOKENS_FP8 = Math.clamp(Integer.getInteger("kiln.cuda.skinnyMinTokens.fp8", 4), 1,
            SkinnyPlan.MAX_TOKENS + 1);
    /**
     * The same for INT4 codes (system property {@code kiln.cuda.skinnyMinTokens.int4}), whose own GEMVs have no fusions:
     * batch 3 took 1.62 ms a step with these against 1.85, batch 4 1.76 against 1.97, batch 2 1.62 against 1.46.
     */
    static final int SKINNY_MIN_TOKENS_INT4 = Math.clamp(Integer.getInteger("kiln.cuda.skinnyMinTokens.int4", 3), 1,
            SkinnyPlan.MAX_TOKENS + 1);

    /** Fewest tokens a product of a weight format ("bf16", "int8", "int4", "fp8") takes {@link #skinny} with. */
    public static int skinnyMinTokens(String format) {
        return switch (format) {
            case "int8" -> SKINNY_MIN_TOKENS_INT8;
            case "int4" -> SKINNY_MIN_TOKENS_INT4;
            case "fp8" -> SKINNY_MIN_TOKENS_FP8;
            default -> SKINNY_MIN_TOKENS;
        };
    }
    /**
     * Most tokens that take them (system property {@code kiln.cuda.skinnyMaxTokens}, at most
     * {@link SkinnyPlan#MAX_TOKENS}): above, the paired cuBLAS GEMM. At 32 tokens their gated MLP product runs at half
     * the weight-read rate, and a step took 3.11 ms against 3.00 with cuBLAS; at 16, 2.30 against 2.95.
     */
    public static final int SKINNY_MAX_TOKENS = Math.clamp(Integer.getInteger("kiln.cuda.skinnyMaxTokens", 16), 0,
            SkinnyPlan.MAX_TOKENS);
    /**
     * The same for products of fewer than {@link #SPLIT_BELOW_ROWS} rows (q/k/v, o and down of a small model; system
     * property {@code kiln.cuda.skinnyNarrowMaxTokens}), whose few tiles are split over clusters and keep their
     * speed at 32 tokens (o 8.2 us, down 22.9 us on an H100) where the wide products' entries lose theirs: steps of
     * 24 / 32 sequences took 2.84 / 2.93 ms with them against 2.97 / 3.01 with cuBLAS.
     */
    public static final int SKINNY_NARROW_MAX_TOKENS = Math.clamp(Integer.getInteger("kiln.cuda.skinnyNarrowMaxTokens",
            SkinnyPlan.MAX_TOKENS), 0, SkinnyPlan.MAX_TOKENS);
    /**
     * The same for INT8, INT4 and FP8 weights of any row count (system property
     * {@code kiln.cuda.skinnyQuantizedMaxTokens}): their alternative above 8 tokens
     * dequantizes the weight into bf16 for cuBLAS every step, so these kernels win at every count they take (INT8
     * served at concurrency 16 on an H100: 5,936 output tok/s against 1,316).
     */
    public static final int SKINNY_QUANTIZED_MAX_TOKENS = Math.clamp(Integer.getInteger("kiln.cuda.skinnyQuantizedMaxTokens",
            SkinnyPlan.MAX_TOKENS), 0, SkinnyPlan.MAX_TOKENS);
    /** Weight formats of the few-token entries, as their names spell them. */
    private static final String[] SKINNY_FORMATS = {"bf16", "int8", "int4", "fp8"};

    /**
     * Whether a format's 4-tile entries deal the tokens to two warps a row group: INT4 and FP8 scale each chunk's sums,
     * a second set of them that four tiles a warp cannot keep in registers.
     */
    static boolean skinnyTokenGroups(String format) {
        return format.equals("int4") || format.equals("fp8");
    }
    private final ThreadLocal<LaunchArguments> arguments;

    Kernels(CudaContext context, KernelModules modules) {
        this.context = context;
        this.driver = context.driver();
        this.modules = modules;
        this.arguments = ThreadLocal.withInitial(() -> new LaunchArguments(context));
        add = function("kiln_add");
        addHalves = function("kiln_add_halves");
        addHalvesRmsNorm = function("kiln_add_halves_rms_norm");
        addBias = function("kiln_add_bias");
        scale = function("kiln_scale");
        siluMul = function("kiln_silu_mul");
        splitBf16 = function("kiln_split_bf16");
        rmsNorm = function("kiln_rms_norm");
        addRmsNorm = function("kiln_add_rms_norm");
        embedBf16 = function("kiln_embed_bf16");
        embedF32 = function("kiln_embed_f32");
        resolveTokens = function("kiln_resolve_tokens");
        copyColumns = function("kiln_copy_columns");
        gatherRows = function("kiln_gather_rows");
        scatterAddRows = function("kiln_scatter_add_rows");
        rotary = function("kiln_rotary");
        rotary2 = function("kiln_rotary2");
        argmaxRows = function("kiln_argmax_rows");
        argmaxSlices = function("kiln_argmax_slices");
        argmaxMerge = function("kiln_argmax_merge");
        samplePrepare = function("kiln_sample_prepare");
        sampleTopK = function("kiln_sample_top_k");
        sampleWeights = function("kiln_sample_weights");
        sampleTopP = function("kiln_sample_top_p");
        sampleKept = function("kiln_sample_kept");
        samplePick = function("kiln_sample_pick");
        gemvBf16 = function("kiln_gemv_bf16");
        gemvF32 = function("kiln_gemv_f32");
        writeKv = function("kiln_write_kv");
        pagedAttention = function("kiln_paged_attention");
        pagedAttentionSplit = function("kiln_paged_attention_split");
        pagedAttentionCombine = function("kiln_paged_attention_combine");
        writeKvBf16 = function("kiln_write_kv_bf16");
        pagedAttentionBf16 = function("kiln_paged_attention_bf16");
        pagedAttentionSplitBf16 = function("kiln_paged_attention_split_bf16");
        decodeAttentionBf16 = function("kiln_decode_attention_bf16");
        prefillAttentionBf16 = function("kiln_prefill_attention_bf16");
        prefillAttentionWideBf16 = function("kiln_prefill_attention_wide_bf16");
        // The largest groups whose blocks' shared memory the device grants (8 on Hopper and A100; fewer where a block
        // may have at most 99 KiB); none below compute capability 8.0.
        boolean tensorCores = context.properties().computeMajor() >= 8;
        prefillMaxGroup = tensorCores ? largestGrantedGroup(driver, prefillAttentionBf16, 1, PrefillTiles.MAX_NARROW_GROUP) : 0;
        prefillMaxWideGroup = tensorCores
                ? largestGrantedGroup(driver, prefillAttentionWideBf16, PrefillTiles.MAX_NARROW_GROUP + 1, PrefillTiles.MAX_GROUP)
                : 0;
        largestAttentionCluster = context.recorder().clusters() ? largestAttentionCluster(driver) : 1;
        boolean skinny = tensorCores;
        int skinnyCluster = context.recorder().clusters() ? SkinnyPlan.MAX_CLUSTER : 1;
        if (tensorCores) {
            for (int tiles : new int[] {1, 2, 4}) {
                for (int groups : new int[] {1, 2, 4}) {
                    if (groups > tiles) continue;
                    for (String format : SKINNY_FORMATS) {
                        if (tiles == 4 && skinnyTokenGroups(format)) continue; // their 4-tile entries: below
                        skinny &= grantSkinny(format, tiles, groups, 1, skinnyCluster);
                    }
                }
            }
            for (String format : SKINNY_FORMATS) {
                if (skinnyTokenGroups(format)) skinny &= grantSkinny(format, 4, 4, 2, skinnyCluster);
            }
        }
        skinnyAvailable = skinny;
        largestSkinnyCluster = skinnyCluster;
        bf16Gemvs = TokenGemvs.load(modules, "bf16", GEMV_MAX_TOKENS, false);
        int8Gemvs = TokenGemvs.load(modules, "int8", INT8_GEMV_MAX_TOKENS, true);
        fp8Gemvs = TokenGemvs.load(modules, "fp8", FP8_GEMV_MAX_TOKENS, true);
        int4Gemvs = TokenGemvs.load(modules, "int4", INT4_GEMV_MAX_TOKENS, true, false);
        for (TokenGemvs family : new TokenGemvs[] {bf16Gemvs, int8Gemvs, fp8Gemvs, int4Gemvs}) {
            family.index(singleFamilies, multiFamilies);
        }
    }

    private MemorySegment function(String name) {
        return modules.function(name);
    }

    /** The kernel names the source's units must define (checked by the compilation test without a GPU). */
    public static final String[] NAMES = {"kiln_add", "kiln_add_halves", "kiln_add_halves_rms_norm", "kiln_add_bias", "kiln_scale", "kiln_silu_mul", "kiln_split_bf16",
            "kiln_rms_norm", "kiln_add_rms_norm", "kiln_embed_bf16", "kiln_embed_f32", "kiln_resolve_tokens", "kiln_copy_columns", "kiln_gather_rows",
            "kiln_scatter_add_rows", "kiln_rotary", "kiln_rotary2", "kiln_argmax_rows", "kiln_argmax_slices", "kiln_argmax_merge", "kiln_sample_prepare", "kiln_sample_top_k", "kiln_sample_weights",
            "kiln_sample_top_p", "kiln_sample_kept", "kiln_sample_pick", "kiln_gemv_split_bf16_t1", "kiln_gemv_split_bf16_t8", "kiln_gemv_bf16", "kiln_gemv_f32", "kiln_write_kv",
            "kiln_paged_attention", "kiln_paged_attention_split", "kiln_paged_attention_combine",
            "kiln_write_kv_bf16", "kiln_paged_attention_bf16", "kiln_paged_attention_split_bf16", "kiln_decode_attention_bf16", "kiln_prefill_attention_bf16",
            "kiln_prefill_attention_wide_bf16",
            "kiln_gemv_bf16_t1", "kiln_gemv_bf16_t2", "kiln_gemv_bf16_t3", "kiln_gemv_bf16_t4",
            "kiln_gemv_bf16_t5", "kiln_gemv_bf16_t6", "kiln_gemv_bf16_t7", "kiln_gemv_bf16_t8",
            "kiln_gemv3_bf16_t1", "kiln_gemv3_bf16_t8", "kiln_gemv3_split_bf16_t1", "kiln_gemv3_split_bf16_t8", "kiln_gemv_silu_bf16_t1", "kiln_gemv_silu_bf16_t8",
            "kiln_gemv_int8_t1", "kiln_gemv_split_int8_t1", "kiln_gemv3_int8_t1", "kiln_gemv3_split_int8_t1", "kiln_gemv_silu_int8_t1",
            "kiln_gemv_int8_t4", "kiln_gemv_split_int8_t4", "kiln_gemv3_int8_t4", "kiln_gemv3_split_int8_t4", "kiln_gemv_silu_int8_t4",
            "kiln_gemv_fp8_t1", "kiln_gemv_silu_fp8_t4", "kiln_gemv_int4_t1", "kiln_gemv_split_int4_t1", "kiln_gemv3_int4_t1",
            "kiln_gemv3_split_int4_t1", "kiln_gemv_silu_int4_t1",
            "kiln_skinny_bf16_n1_r1", "kiln_skinny_bf16_n2_r1", "kiln_skinny_bf16_n2_r2", "kiln_skinny_bf16_n4_r1",
            "kiln_skinny_bf16_n4_r2", "kiln_skinny_bf16_n4_r4", "kiln_skinny_silu_bf16_n1_r1", "kiln_skinny_silu_bf16_n2_r2",
            "kiln_skinny_silu_bf16_n4_r4", "kiln_skinny_int8_n1_r1", "kiln_skinny_int8_n4_r4", "kiln_skinny_silu_int8_n1_r1",
            "kiln_skinny_silu_int8_n4_r4", "kiln_skinny_int4_n4_r4_t2", "kiln_skinny_silu_fp8_n4_r4_t2"};

    /**
     * {@code acc[i] += x[i]}. When the held launch before is the token-specialised GEMV that wrote x (an attention
     * output or down projection, before the residual add), the GEMV adds each output row into acc as it stores it.
     */
    public void add(long acc, long x, long n) {
        if (n == 0) return;
        StepRecorder.Launch last = context.recorder().lastLaunch();
        if (last != null && last.function().equals(addHalves) && last.argument(HALVES_OUT) == x
                && last.argument(HALVES_N) == n && last.argument(HALVES_RESIDUAL) == 0
                && disjoint(acc, 4L * n, x, 4L * n) && disjoint(acc, 4L * n, last.argument(HALVES_IN), 8L * n)
                && context.recorder().replaceLast(last, last.with(HALVES_RESIDUAL, acc))) {
            return; // the paired GEMM's sum of halves that wrote x adds it into acc as it stores it
        }
        if (last != null && isTokenGemv(last.function()) && last.argument(GEMV_OUT) == x && last.argument(GEMV_RESIDUAL) == 0
                && (long) (int) last.argument(GEMV_ROWS) * (int) last.argument(GEMV_TOKENS) == n) {
            int tokens = (int) last.argument(GEMV_TOKENS);
            long inputBytes = 4L * tokens * (int) last.argument(GEMV_COLUMNS);
            // No block may read what another adds into: acc must be apart from every input and from the output.
            if (disjoint(acc, 4L * n, x, 4L * n) && disjoint(acc, 4L * n, last.argument(GEMV_X), inputBytes)
                    && (last.argument(GEMV_NORMED) == 0 || disjoint(acc, 4L * n, last.argument(GEMV_NORMED), inputBytes))
                    && context.recorder().replaceLast(last, last.with(GEMV_RESIDUAL, acc))) {
                return;
            }
        }
        args().ptr(acc).ptr(x).i64(n).launch(add, "kiln_add", blocks(n), 1, THREADS, 0);
    }

    /** {@code out[i] = halves[i] + halves[n + i]}: the two partial products of a paired GEMM. */
    public void addHalves(long halves, long out, long n) {
        if (n == 0) return;
        args().ptr(halves).ptr(out).i64(n).ptr(0).i32(1).ptr(0).launch(addHalves, "kiln_add_halves", blocks(n), 1, THREADS, 0);
    }

    /** Argument slots of kiln_add_halves: halves, out, n, bias, width, residual. */
    private static final int HALVES_IN = 0, HALVES_OUT = 1, HALVES_N = 2, HALVES_BIAS = 3, HALVES_WIDTH = 4,
            HALVES_RESIDUAL = 5;
    /** Argument slots of kiln_add_halves_rms_norm that a later fusion reads or rewrites. */
    private static final int HALVES_NORM_N = 1, HALVES_NORM_OUT = 7, HALVES_NORM_HI = 9, HALVES_NORM_LO = 10;

    /**
     * Splits {@code n} f32 activations at x into the bf16 parts of a paired or tensor-core product inside the held
     * launch, when that writes x as a whole: an RMSNorm (alone, after a residual add, or after a paired GEMM's sum of
     * halves) whose normed output is x, or a gated MLP product whose output is x. It then stores the parts as it stores
     * each value, and the caller launches no kiln_split_bf16. Returns whether it did.
     */
    public boolean splitInHeld(long x, long hi, long lo, long n) {
        StepRecorder.Launch last = context.recorder().lastLaunch();
        if (last == null) return false;
        MemorySegment f = last.function();
        int outSlot, hiSlot;
        long written, input, inputBytes;
        if (f.equals(addHalvesRmsNorm)) {
            outSlot = HALVES_NORM_OUT;
            hiSlot = HALVES_NORM_HI;
            written = last.argument(HALVES_NORM_N);
            input = last.argument(HALVES_IN);
            inputBytes = 8 * written;
        } else if (f.equals(rmsNorm) || f.equals(addRmsNorm)) {
            boolean alone = f.equals(rmsNorm);
            outSlot = alone ? NORM_OUT : ADD_NORM_OUT;
            hiSlot = alone ? NORM_HI : ADD_NORM_HI;
            written = (long) last.gridX() * (int) last.argument(alone ? NORM_N : ADD_NORM_N);
            input = last.argument(0);
            inputBytes = 4 * written;
        } else if (isSkinnyGated(f)) {
            outSlot = GATED_OUT;
            hiSlot = GATED_OUT_HI;
            written = (long) (int) last.argument(GATED_ROWS) * (int) last.argument(SKINNY_TOKENS);
            // The parts must not be the gated product's own operands.
            long operandBytes = 2L * (int) last.argument(SKINNY_TOKENS) * (int) last.argument(SKINNY_COLUMNS);
            if (!disjoint(hi, 2 * n, last.argument(SKINNY_HI), operandBytes) || !disjoint(hi, 2 * n, last.argument(SKINNY_LO), operandBytes)
                    || !disjoint(lo, 2 * n, last.argument(SKINNY_HI), operandBytes) || !disjoint(lo, 2 * n, last.argument(SKINNY_LO), operandBytes)) {
                return false;
            }
            input = last.argument(GATED_OUT);
            inputBytes = 0;
        } else {
            return false;
        }
        return last.argument(outSlot) == x && last.argument(hiSlot) == 0 && written == n
                && disjoint(hi, 2 * n, input, inputBytes) && disjoint(lo, 2 * n, input, inputBytes)
                && context.recorder().replaceLast(last, last.with(hiSlot, hi).with(hiSlot + 1, lo));
    }

    /**
     * {@code x[i] += bias[i % width]}. When the held launch before is the GEMV that wrote x (rows of width), or the
     * sum of a paired GEMM's halves that did, the bias joins that launch instead: it adds it as it stores each output.
     */
    public void addBias(long x, long bias, long n, int width) {
        if (n == 0) return;
        StepRecorder.Launch last = context.recorder().lastLaunch();
        if (last != null && isGemv(last.function()) && last.argument(GEMV_OUT) == x && last.argument(GEMV_BIAS) == 0
                && (int) last.argument(GEMV_ROWS) == width && (long) width * (int) last.argument(GEMV_TOKENS) == n) {
            if (context.recorder().replaceLast(last, last.with(GEMV_BIAS, bias))) return;
        }
        if (last != null && last.function().equals(addHalves) && last.argument(1) == x && last.argument(2) == n
                && last.argument(3) == 0) {
            // The paired GEMM's sum of halves that wrote x (a batched product): it adds the bias as it stores.
            if (context.recorder().replaceLast(last, last.with(3, bias).with(4, width))) return;
        }
        if (last != null && isSkinnyPlain(last.function())
                && biasIntoHeldSegment(last, SKINNY_SEGMENTS, SKINNY_SEGMENT_SLOTS, (int) last.argument(SKINNY_TOKENS), x, bias, n, width)) {
            return;
        }
        if (last != null && isGemv3(last.function())
                && biasIntoHeldSegment(last, MULTI_SEGMENTS, 4, (int) last.argument(MULTI_TOKENS), x, bias, n, width)) {
            return;
        }
        args().ptr(x).ptr(bias).i64(n).i32(width).launch(addBias, "kiln_add_bias", blocks(n), 1, THREADS, 0);
    }

    /**
     * Gives the bias to the segment of the held multi-segment product (kiln_gemv3, kiln_skinny) that wrote x, if one
     * did and has none yet: it adds it as it stores. {@code segments}: the first segment's slot, {@code stride} slots
     * each.
     */
    private boolean biasIntoHeldSegment(StepRecorder.Launch last, int segments, int stride, int tokens, long x, long bias,
                                        long n, int width) {
        for (int segment = 0; segment < 3; segment++) {
            int base = segments + stride * segment;
            if (last.argument(base + SEGMENT_OUT) == x && last.argument(base + SEGMENT_BIAS) == 0
                    && (int) last.argument(base + SEGMENT_ROWS) == width && (long) width * tokens == n) {
                return context.recorder().replaceLast(last, last.with(base + SEGMENT_BIAS, bias));
            }
        }
        return false;
    }

    /** {@code x[i] *= factor}. */
    public void scale(long x, float factor, long n) {
        if (n == 0) return;
        args().ptr(x).f32(factor).i64(n).launch(scale, "kiln_scale", blocks(n), 1, THREADS, 0);
    }

    /** {@code out[i] = silu(gate[i]) * up[i]}. */
    public void siluMul(long gate, long up, long out, long n) {
        if (n == 0) return;
        StepRecorder.Launch last = context.recorder().lastLaunch();
        if (last != null && isSkinnyPlain(last.function()) && gateIntoHeldSkinny(last, gate, up, out, n)) return;
        TokenGemvs family = last == null ? null : multiFamily(last.function());
        if (family != null) {
            // The held launch computes exactly gate and up (two segments, no bias, equal rows): it can gate too.
            int tokens = (int) last.argument(MULTI_TOKENS);
            int s0 = MULTI_SEGMENTS, s1 = MULTI_SEGMENTS + 4, s2 = MULTI_SEGMENTS + 8;
            long x = last.argument(MULTI_X);
            int rows = (int) last.argument(s0 + SEGMENT_ROWS);
            if (last.argument(s2 + SEGMENT_ROWS) == 0 && last.argument(s0 + SEGMENT_OUT) == gate
                    && last.argument(s1 + SEGMENT_OUT) == up && (int) last.argument(s1 + SEGMENT_ROWS) == rows
                    && last.argument(s0 + SEGMENT_BIAS) == 0 && last.argument(s1 + SEGMENT_BIAS) == 0
                    && (long) rows * tokens == n
                    && disjoint(out, 4L * n, x, 4L * tokens * last.argument(MULTI_COLUMNS))
                    && (last.argument(MULTI_NORMED) == 0
                        || disjoint(out, 4L * n, last.argument(MULTI_NORMED), 4L * tokens * last.argument(MULTI_COLUMNS)))) {
                int warps = GEMV_THREADS / 32;
                if (args().ptr(x).i32((int) last.argument(MULTI_COLUMNS)).i32(tokens)
                        .ptr(last.argument(s0 + SEGMENT_W)).ptr(last.argument(s1 + SEGMENT_W)).ptr(gate).ptr(up).ptr(out).i32(rows)
                        .ptr(last.argument(MULTI_SCALE)).slot(last.argument(MULTI_EPS)).ptr(last.argument(MULTI_NORMED))
                        .replace(last, family.silu[tokens - 1], "kiln_gemv_silu",
                                Math.ceilDiv(rows, warps * family.siluPairsOf(tokens)), 1, GEMV_THREADS,
                                stagedBytes(tokens, (int) last.argument(MULTI_COLUMNS)))) {
                    return;
                }
            }
        }
        args().ptr(gate).ptr(up).ptr(out).i64(n).launch(siluMul, "kiln_silu_mul", blocks(n), 1, THREADS, 0);
    }

    /**
     * {@code out[r]} = the column of row r's largest value (first on ties), for {@code rows} rows of n: rows of a
     * vocabulary in two passes over {@link #ARGMAX_SLICES} slices ({@code partials}: rows x slices floats then as many
     * ints), short rows in one block each.
     */
    public void argmaxRows(long x, int n, long out, int rows, long partials) {
        if (rows == 0) return;
        if (n < 64 * 1024) {
            args().ptr(x).i32(n).ptr(out).launch(argmaxRows, "kiln_argmax_rows", rows, 1, 1024, 0);
            return;
        }
        long indices = partials + 4L * rows * ARGMAX_SLICES;
        args().ptr(x).i32(n).ptr(partials).ptr(indices).launch(argmaxSlices, "kiln_argmax_slices", ARGMAX_SLICES, rows, 256, 0);
        args().ptr(partials).ptr(indices).i32(ARGMAX_SLICES).ptr(out).launch(argmaxMerge, "kiln_argmax_merge", rows, 1, 64, 0);
    }

    /** Threads of the sampling kernels; must match SAMPLE_THREADS in the source. */
    static final int SAMPLE_THREADS = 256;
    /** Most slices a row is cut into; must match SAMPLE_MAX_SLICES in the source. */
    static final int SAMPLE_MAX_SLICES = 64;
    /** Scratch of one row of {@link #sampleRows}; must match SAMPLE_ROW_BYTES in the source. */
    public static final long SAMPLE_ROW_BYTES = 65536;
    /** Blocks per multiprocessor the slices aim for: 8 of 256 threads fill an SM's 2048 threads. */
    static final int SAMPLE_BLOCKS_PER_MULTIPROCESSOR = 8;
    /** Fewest columns worth a slice of their own: below this a block spends more on its launch than on its reads. */
    static final int SAMPLE_MIN_SLICE = 2048;

    /**
     * Slices per row of {@link #sampleRows}: enough for {@link #SAMPLE_BLOCKS_PER_MULTIPROCESSOR} blocks per
     * multiprocessor, at most {@link #SAMPLE_MAX_SLICES}, and no slice under {@link #SAMPLE_MIN_SLICE} columns. Each
     * thread's reads are one load at a time, so only many resident threads keep enough of them in flight: at 128
     * rows of a 152K vocabulary on an H100, two slices per row (two blocks per SM) made sampling slower than the
     * one-block-per-row kernel before it.
     */
    static int sampleSlices(int rows, int n, int multiprocessors) {
        int wanted = Math.max(1, Math.ceilDiv(SAMPLE_BLOCKS_PER_MULTIPROCESSOR * multiprocessors, Math.max(1, rows)));
        return Math.max(1, Math.min(Math.min(SAMPLE_MAX_SLICES, wanted), n / SAMPLE_MIN_SLICE));
    }

    /**
     * {@code out[r]} = the column drawn from row r as {@code ComputeBackend.sampleRows} defines; params 4 per row
     * (device copies), {@code scratch} {@link #SAMPLE_ROW_BYTES} per row. The top-k and top-p launches are left out
     * when no row has k above 0 ({@code anyTopK}) or top-p below 1 ({@code anyTopP}), as the source's comment
     * describes.
     */
    public void sampleRows(long x, int n, long params, long uniforms, long scratch, long out, int rows, boolean anyTopK,
                           boolean anyTopP) {
        if (rows == 0) return;
        int slices = sampleSlices(rows, n, context.properties().multiprocessors());
        sampleArguments(x, n, params, scratch).launch(samplePrepare, "kiln_sample_prepare", slices, rows, SAMPLE_THREADS, 0);
        if (anyTopK) {
            for (int level = 0; level < 3; level++) {
                sampleArguments(x, n, params, scratch).i32(level)
                        .launch(sampleTopK, "kiln_sample_top_k", slices, rows, SAMPLE_THREADS, 0);
            }
        }
        sampleArguments(x, n, params, scratch).launch(sampleWeights, "kiln_sample_weights", slices, rows, SAMPLE_THREADS, 0);
        if (anyTopP) {
            for (int level = 1; level < 3; level++) {
                sampleArguments(x, n, params, scratch).i32(level)
                        .launch(sampleTopP, "kiln_sample_top_p", slices, rows, SAMPLE_THREADS, 0);
            }
        }
        sampleArguments(x, n, params, scratch).launch(sampleKept, "kiln_sample_kept", slices, rows, SAMPLE_THREADS, 0);
        sampleArguments(x, n, params, scratch).ptr(uniforms).ptr(out)
                .launch(samplePick, "kiln_sample_pick", slices, rows, SAMPLE_THREADS, 0);
    }

    /** The leading arguments every sampling launch takes: the logits, their row length, the parameters, the scratch. */
    private LaunchArguments sampleArguments(long x, int n, long params, long scratch) {
        return args().ptr(x).i32(n).ptr(params).ptr(scratch);
    }

    /** Splits f32 values into bf16 high and low parts. */
    public void splitBf16(long x, long hi, long lo, long n) {
        if (n == 0) return;
        args().ptr(x).ptr(hi).ptr(lo).i64(n).launch(splitBf16, "kiln_split_bf16", blocks(n), 1, THREADS, 0);
    }

    /**
     * RMSNorm of {@code rows} rows of {@code n}. When the held launch before is the residual add into x of exactly
     * these rows, both become one kernel: each row is read once and written twice instead of read three times. When
     * it is the sum of a paired GEMM's halves added into x, the sum, the add and the norm become one per-row kernel.
     */
    public void rmsNorm(long x, long scale, float eps, long out, int rows, int n) {
        if (rows == 0) return;
        StepRecorder.Launch last = context.recorder().lastLaunch();
        long total = (long) rows * n;
        if (last != null && last.function().equals(addHalves) && last.argument(HALVES_RESIDUAL) == x
                && last.argument(HALVES_N) == total && (last.argument(HALVES_BIAS) == 0 || (int) last.argument(HALVES_WIDTH) == n)
                && disjoint(out, 4L * total, last.argument(HALVES_IN), 8L * total) && disjoint(out, 4L * total, x, 4L * total)) {
            // The paired GEMM's sum of halves added into x just before: one block per row sums, adds and normalises.
            if (args().ptr(last.argument(HALVES_IN)).i64(total).ptr(last.argument(HALVES_BIAS)).ptr(last.argument(HALVES_OUT))
                    .ptr(x).ptr(scale).f32(eps).ptr(out).i32(n).ptr(0).ptr(0)
                    .replace(last, addHalvesRmsNorm, "kiln_add_halves_rms_norm", rows, 1, THREADS, 0)) {
                return;
            }
        }
        if (last != null && last.function().equals(add) && last.argument(0) == x && last.argument(2) == total) {
            long delta = last.argument(1);
            if (args().ptr(x).ptr(delta).ptr(scale).f32(eps).ptr(out).i32(n).ptr(0).ptr(0)
                    .replace(last, addRmsNorm, "kiln_add_rms_norm", rows, 1, THREADS, 0)) {
                return;
            }
        }
        args().ptr(x).ptr(scale).f32(eps).ptr(out).i32(n).ptr(0).ptr(0).launch(rmsNorm, "kiln_rms_norm", rows, 1, THREADS, 0);
    }

    /** {@code out[t] = table[ids[t]]} for a bf16 or f32 table. */
    public void embed(boolean bf16, long table, long ids, long out, int count, int columns) {
        if (count == 0) return;
        args().ptr(table).ptr(ids).ptr(out).i32(columns)
                .launch(bf16 ? embedBf16 : embedF32, "kiln_embed", count, 1, THREADS, 0);
    }

    /**
     * {@code out[t] = ids[t]}, except that a placeholder {@code -1 - r} becomes {@code pending[r]}: a token chosen on
     * the device by the step ahead.
     */
    public void resolveTokens(long ids, long pending, long out, int count) {
        if (count == 0) return;
        args().ptr(ids).ptr(pending).ptr(out).i32(count).launch(resolveTokens, "kiln_resolve_tokens", blocks(count), 1, THREADS, 0);
    }

    /** Copies a band of columns between row-major matrices. */
    public void copyColumns(long src, int srcRow, int srcOffset, long dst, int dstRow, int dstOffset, int width, int rows) {
        copyColumns(src, srcRow, srcOffset, 0, dst, dstRow, dstOffset, 0, width, 1, rows);
    }

    /** {@code count} column ranges per row, range k from {@code srcOffset + k * srcStride} to {@code dstOffset + k * dstStride}. */
    public void copyColumns(long src, int srcRow, int srcOffset, int srcStride, long dst, int dstRow, int dstOffset,
                            int dstStride, int width, int count, int rows) {
        long n = (long) rows * count * width;
        if (n == 0) return;
        args().ptr(src).i32(srcRow).i32(srcOffset).i32(srcStride).ptr(dst).i32(dstRow).i32(dstOffset).i32(dstStride)
                .i32(width).i32(count).i64(n).launch(copyColumns, "kiln_copy_columns", blocks(n), 1, THREADS, 0);
    }

    /** {@code dst[i] = src[rows[i]]}. */
    public void gatherRows(long src, long rows, long dst, int count, int n) {
        if (count == 0) return;
        args().ptr(src).ptr(rows).ptr(dst).i32(n).launch(gatherRows, "kiln_gather_rows", count, 1, THREADS, 0);
    }

    /** {@code dst[rows[i]] += scales[i] * src[i]}, rows in order. */
    public void scatterAddRows(long src, long rows, long scales, long dst, int n, int count) {
        if (count == 0 || n == 0) return;
        args().ptr(src).ptr(rows).ptr(scales).ptr(dst).i32(n).i32(count)
                .launch(scatterAddRows, "kiln_scatter_add_rows", (n + THREADS - 1) / THREADS, 1, THREADS, 0);
    }

    /** Rotates the rotary part of every head of {@code rows} rows. */
    public void rotary(long x, long positions, long cos, long sin, int rows, int rowLength, int heads, int headStride,
                       int offset, int half, boolean interleaved) {
        if (rows == 0) return;
        StepRecorder.Launch last = context.recorder().lastLaunch();
        if (last != null && last.function().equals(rotary) && last.gridX() == rows && last.argument(1) == positions
                && last.argument(2) == cos && last.argument(3) == sin && (int) last.argument(6) == headStride
                && (int) last.argument(7) == offset && (int) last.argument(8) == half
                && (int) last.argument(9) == (interleaved ? 1 : 0)
                && disjoint(last.argument(0), 4L * rows * (int) last.argument(4), x, 4L * rows * rowLength)) {
            // The queries' rotation is held: rotate the keys in the same launch.
            int block = Math.max(last.block(), Math.min(THREADS, roundUp(heads * half)));
            if (args().ptr(last.argument(0)).i32((int) last.argument(4)).i32((int) last.argument(5)).ptr(x).i32(rowLength).i32(heads)
                    .ptr(positions).ptr(cos).ptr(sin).i32(headStride).i32(offset).i32(half).i32(interleaved ? 1 : 0)
                    .replace(last, rotary2, "kiln_rotary2", rows, 2, block, 0)) {
                return;
            }
        }
        args().ptr(x).ptr(positions).ptr(cos).ptr(sin).i32(rowLength).i32(heads).i32(headStride).i32(offset).i32(half)
                .i32(interleaved ? 1 : 0).launch(rotary, "kiln_rotary", rows, 1, Math.min(THREADS, roundUp(heads * half)), 0);
    }

    /**
     * {@code out[t] = W · x[t]} for up to {@link #GEMV_MAX_TOKENS} tokens, W bf16 or f32 {@code [rows, columns]}:
     * aligned bf16 weights with whole 8-element chunks take the kernel specialised for the token count.
     */
    public void gemv(boolean bf16, long w, long x, long out, int rows, int columns, int tokens) {
        if (tokens == 0 || rows == 0) return;
        int perLoad = bf16 ? 8 : 4;
        boolean vectorized = columns % perLoad == 0 && w % 16 == 0 && x % 16 == 0;
        if (bf16 && vectorized) {
            tokenGemv(bf16Gemvs, w, x, out, rows, columns, tokens);
            return;
        }
        int warps = THREADS / 32;
        args().ptr(w).ptr(x).ptr(out).i32(rows).i32(columns).i32(tokens).i32(vectorized ? 1 : 0).ptr(0)
                .launch(bf16 ? gemvBf16 : gemvF32, "kiln_gemv", (rows + warps - 1) / warps, 1, THREADS, 0);
    }

    /**
     * {@code out[t] = W · x[t]} for W INT8 {@code [rows, columns]}, rows of {@code columns} codes at {@code codes}
     * followed by one f32 scale per row ({@code W[r, c] = q[r, c] · s[r]}), by the token-specialised products with the
     * bf16 products' fusions (the norm before, q/k/v and gate/up in one launch, the gating, bias and residual add
     * after). Returns false, launching nothing, where they do not apply: more than {@link #INT8_GEMV_TOKENS} tokens,
     * columns not a multiple of 16, or codes or x not 16-byte aligned.
     */
    public boolean gemvInt8(long codes, long x, long out, int rows, int columns, int tokens) {
        return codesGemv(int8Gemvs, INT8_GEMV_TOKENS, 16, codes, x, out, rows, columns, tokens);
    }

    /**
     * {@code out[t] = W · x[t]} for W FP8 {@code [rows, columns]}: rows of {@code columns} e4m3 codes at {@code codes}
     * followed by one f32 scale per block of {@link #FP8_GEMV_BLOCK} × {@link #FP8_GEMV_BLOCK} weights, row-major over
     * the blocks ({@link Fp8Weight}), by the token-specialised products with the bf16 products' fusions, as
     * {@link #gemvInt8}. Returns false, launching nothing, where they do not apply: more than {@link #FP8_GEMV_TOKENS}
     * tokens, columns not a multiple of 16, or codes or x not 16-byte aligned.
     */
    public boolean gemvFp8(long codes, long x, long out, int rows, int columns, int tokens) {
        return codesGemv(fp8Gemvs, FP8_GEMV_TOKENS, 16, codes, x, out, rows, columns, tokens);
    }

    /**
     * {@code out[t] = W · x[t]} for W INT4 {@code [rows, columns]}: rows of {@code columns / 2} bytes of codes
     * {@code u = q + 8} two a byte at {@code codes} (column 2j in the low nibble of byte j) followed by one f32 scale per
     * row and group of {@link #INT4_GEMV_GROUP} columns ({@link QuantizedWeight}), by the token-specialised products
     * with the bf16 products' fusions but the norm's (see {@link #INT4_GEMV_MAX_TOKENS}), as {@link #gemvInt8}. Returns false, launching nothing, where they do not apply:
     * more than {@link #INT4_GEMV_TOKENS} tokens, columns not a multiple of 32, or codes or x not 16-byte aligned. The
     * caller checks the group size.
     */
    public boolean gemvInt4(long codes, long x, long out, int rows, int columns, int tokens) {
        return codesGemv(int4Gemvs, INT4_GEMV_TOKENS, 32, codes, x, out, rows, columns, tokens);
    }

    /**
     * {@link #tokenGemv} for a family of codes, where its kernels take the product (see {@link #gemvInt8}): rows of
     * whole 16-byte chunks of {@code chunkColumns} columns.
     */
    private boolean codesGemv(TokenGemvs family, int mostTokens, int chunkColumns, long codes, long x, long out, int rows,
                              int columns, int tokens) {
        if (tokens < 1 || tokens > mostTokens || columns % chunkColumns != 0 || codes % 16 != 0 || x % 16 != 0) return false;
        if (rows > 0) tokenGemv(family, codes, x, out, rows, columns, tokens);
        return true;
    }

    /**
     * Dynamic shared memory for a warp-per-row product (the plain and gate/up kernels of every family) to stage its
     * activations in ({@link #STAGED_MAX_BYTES}); 0 where it reads them from global memory. The kernel takes the staged
     * path exactly when it is given this much.
     */
    static int stagedBytes(int tokens, int columns) {
        long bytes = 4L * columns * tokens;
        return tokens <= STAGED_MAX_TOKENS && columns % 4 == 0 && bytes <= STAGED_MAX_BYTES ? (int) bytes : 0;
    }

    /**
     * A token-specialised product of a family: joined to a held product of the same activations, or with a held norm
     * of x folded in, or alone.
     */
    private void tokenGemv(TokenGemvs family, long w, long x, long out, int rows, int columns, int tokens) {
        if (mergeIntoHeldGemv(family, w, x, out, rows, columns, tokens)) return;
        boolean split = rows < SPLIT_BELOW_ROWS;
        int shared = split ? 0 : stagedBytes(tokens, columns);
        // A norm held just before whose output this product reads: one launch does both (see kernels.cu). INT4 folds
        // it only into a product that stages its activations, which applies the norm's scale once a block.
        boolean folds = family.foldsNorm || (family == int4Gemvs && INT4_FOLDS_STAGED_NORM && shared > 0);
        StepRecorder.Launch norm = folds ? heldNormFeeding(x, columns, tokens, out, 4L * tokens * rows) : null;
        long input = norm == null ? x : norm.argument(NORM_X);
        LaunchArguments a = args().ptr(w).ptr(input).ptr(out).i32(rows).i32(columns).i32(tokens).i32(1).ptr(0).ptr(0);
        if (norm == null) {
            a.ptr(0).slot(0).ptr(0);
        } else {
            a.ptr(norm.argument(NORM_SCALE)).slot(norm.argument(NORM_EPS)).ptr(x);
        }
        MemorySegment kernel = (split ? family.split : family.plain)[tokens - 1];
        int grid = split ? Math.ceilDiv(rows, family.splitRowsOf(tokens))
                : Math.ceilDiv(rows, GEMV_THREADS / 32 * family.warpRowsOf(tokens));
        String name = split ? "kiln_gemv_split" : "kiln_gemv";
        if (norm == null) {
            a.launch(kernel, name, grid, 1, GEMV_THREADS, shared);
        } else if (!a.replace(norm, kernel, name, grid, 1, GEMV_THREADS, shared)) {
            // The norm was issued meanwhile: multiply its stored output instead.
            args().ptr(w).ptr(x).ptr(out).i32(rows).i32(columns).i32(tokens).i32(1).ptr(0).ptr(0).ptr(0).slot(0).ptr(0)
                    .launch(kernel, name, grid, 1, GEMV_THREADS, shared);
        }
    }

    /**
     * Whether a bf16 product of this many tokens and columns takes {@link #skinny} here: compute capability 8.0 (bf16
     * tensor-core products), from {@link #skinnyMinTokens} to {@link #SKINNY_MAX_TOKENS} tokens (to
     * {@link #SKINNY_NARROW_MAX_TOKENS} for fewer rows than {@link #SPLIT_BELOW_ROWS}, to
     * {@link #SKINNY_QUANTIZED_MAX_TOKENS} for codes), whole 64-column chunks, 16-byte aligned weights. {@code format}:
     * "bf16", "int8", "int4" or "fp8".
     */
    public boolean skinnyTakes(int tokens, int rows, int columns, long w, String format) {
        int most = !format.equals("bf16") ? SKINNY_QUANTIZED_MAX_TOKENS
                : rows < SPLIT_BELOW_ROWS ? Math.max(SKINNY_MAX_TOKENS, SKINNY_NARROW_MAX_TOKENS) : SKINNY_MAX_TOKENS;
        return skinnyAvailable && tokens >= skinnyMinTokens(format) && tokens <= most && SkinnyPlan.takes(tokens, columns)
                && w % 16 == 0;
    }

    /**
     * {@code out[t] = W · (hi[t] + lo[t])} for W {@code [rows, columns]} and the bf16 parts of the activations
     * ({@link #splitBf16}), f32 sums, on the tensor cores. W is bf16, or codes with f32 {@code scales}: INT8 one a row,
     * INT4 and FP8 one per {@code scaleRows} rows (1 for INT4) and {@code scaleColumns} columns (a multiple of 64),
     * rows of scales {@code ceil(columns / scaleColumns)} long. A product held just before of the same parts, format
     * and scale geometry (q, k and v; gate and up) takes this one as a further segment of its launch.
     */
    public void skinny(String format, long w, long scales, int scaleRows, int scaleColumns, long hi, long lo, long out,
                       int rows, int columns, int tokens) {
        if (rows == 0 || tokens == 0) return;
        long partBytes = 2L * tokens * columns, outBytes = 4L * tokens * rows;
        if (!disjoint(out, outBytes, hi, partBytes) || !disjoint(out, outBytes, lo, partBytes)) {
            throw new IllegalArgumentException("a product's output overlaps its operand");
        }
        long[] added = {w, out, rows, 0, scales};
        StepRecorder.Launch last = context.recorder().lastLaunch();
        if (last != null && isSkinnyPlain(last.function()) && skinnyFormat(last.function()).equals(format)
                && last.argument(SKINNY_HI) == hi && last.argument(SKINNY_LO) == lo
                && (int) last.argument(SKINNY_COLUMNS) == columns && (int) last.argument(SKINNY_TOKENS) == tokens
                && (int) last.argument(SKINNY_SCALE_ROWS) == scaleRows && (int) last.argument(SKINNY_SCALE_COLUMNS) == scaleColumns
                && last.argument(SKINNY_SEGMENTS + 2 * SKINNY_SEGMENT_SLOTS + SEGMENT_ROWS) == 0) {
            int held = last.argument(SKINNY_SEGMENTS + SKINNY_SEGMENT_SLOTS + SEGMENT_ROWS) == 0 ? 1 : 2;
            long[][] segments = new long[3][SKINNY_SEGMENT_SLOTS];
            boolean apart = true;
            for (int i = 0; i < held; i++) {
                for (int j = 0; j < SKINNY_SEGMENT_SLOTS; j++) segments[i][j] = last.argument(SKINNY_SEGMENTS + SKINNY_SEGMENT_SLOTS * i + j);
                apart &= disjoint(segments[i][SEGMENT_OUT], 4L * tokens * segments[i][SEGMENT_ROWS], out, outBytes);
            }
            segments[held] = added;
            int[] rowCounts = new int[held + 1];
            for (int i = 0; i <= held; i++) rowCounts[i] = (int) segments[i][SEGMENT_ROWS];
            SkinnyPlan plan = SkinnyPlan.of(rowCounts, columns, tokens, context.properties().multiprocessors(), largestSkinnyCluster,
                    skinnyTokenGroups(format));
            boolean whole = true;
            for (int i = 0; i < held; i++) whole &= plan.tilesWhole(rowCounts[i]);
            if (apart && whole && skinnyArguments(hi, lo, columns, tokens, segments).i32(scaleRows).i32(scaleColumns)
                    .replace(last, skinnyEntries.get(plan.entry(format)), "kiln_skinny", plan.tiles(), plan.cluster(),
                            SkinnyPlan.WARPS * 32, plan.sharedBytes(), plan.cluster())) {
                return;
            }
        }
        SkinnyPlan plan = SkinnyPlan.of(new int[] {rows}, columns, tokens, context.properties().multiprocessors(),
                largestSkinnyCluster, skinnyTokenGroups(format));
        skinnyArguments(hi, lo, columns, tokens, new long[][] {added, new long[SKINNY_SEGMENT_SLOTS], new long[SKINNY_SEGMENT_SLOTS]})
                .i32(scaleRows).i32(scaleColumns).launch(skinnyEntries.get(plan.entry(format)), "kiln_skinny", plan.tiles(), plan.cluster(), SkinnyPlan.WARPS * 32,
                        plan.sharedBytes(), plan.cluster());
    }

    private LaunchArguments skinnyArguments(long hi, long lo, int columns, int tokens, long[][] segments) {
        LaunchArguments a = args().ptr(hi).ptr(lo).i32(columns).i32(tokens);
        for (long[] segment : segments) {
            a.ptr(segment[SEGMENT_W]).ptr(segment[SEGMENT_OUT]).i32((int) segment[SEGMENT_ROWS]).ptr(segment[SEGMENT_BIAS])
                    .ptr(segment[SEGMENT_SCALES]);
        }
        return a;
    }

    /**
     * The held skinny launch of exactly gate and up (two segments of equal rows, no bias) becomes the gated product
     * into out: silu(gate) * up, which is all a gated MLP reads (gate and up themselves are then not stored).
     */
    private boolean gateIntoHeldSkinny(StepRecorder.Launch last, long gate, long up, long out, long n) {
        int s0 = SKINNY_SEGMENTS, s1 = SKINNY_SEGMENTS + SKINNY_SEGMENT_SLOTS, s2 = SKINNY_SEGMENTS + 2 * SKINNY_SEGMENT_SLOTS;
        int tokens = (int) last.argument(SKINNY_TOKENS), columns = (int) last.argument(SKINNY_COLUMNS);
        int rows = (int) last.argument(s0 + SEGMENT_ROWS);
        long partBytes = 2L * tokens * columns;
        if (last.argument(s2 + SEGMENT_ROWS) != 0 || last.argument(s0 + SEGMENT_OUT) != gate || last.argument(s1 + SEGMENT_OUT) != up
                || (int) last.argument(s1 + SEGMENT_ROWS) != rows || last.argument(s0 + SEGMENT_BIAS) != 0
                || last.argument(s1 + SEGMENT_BIAS) != 0 || (long) rows * tokens != n
                || !disjoint(out, 4 * n, last.argument(SKINNY_HI), partBytes) || !disjoint(out, 4 * n, last.argument(SKINNY_LO), partBytes)) {
            return false;
        }
        String format = skinnyFormat(last.function());
        SkinnyPlan plan = SkinnyPlan.gated(rows, columns, tokens, context.properties().multiprocessors(), largestSkinnyCluster,
                skinnyTokenGroups(format));
        return args().ptr(last.argument(SKINNY_HI)).ptr(last.argument(SKINNY_LO)).i32(columns).i32(tokens)
                .ptr(last.argument(s0 + SEGMENT_W)).ptr(last.argument(s1 + SEGMENT_W)).i32(rows).ptr(out).ptr(0).ptr(0)
                .ptr(last.argument(s0 + SEGMENT_SCALES)).ptr(last.argument(s1 + SEGMENT_SCALES))
                .i32((int) last.argument(SKINNY_SCALE_ROWS)).i32((int) last.argument(SKINNY_SCALE_COLUMNS))
                .replace(last, skinnyEntries.get(plan.gatedEntry(format)), "kiln_skinny_silu",
                        plan.tiles(), plan.cluster(), SkinnyPlan.WARPS * 32, plan.sharedBytes(), plan.cluster());
    }

    /**
     * Loads the plain and the gated entry of a format and geometry and grants each the shared memory of its largest
     * cluster; false where that is refused.
     */
    private boolean grantSkinny(String format, int tiles, int groups, int tokenGroups,
                                int largestCluster) {
        String suffix = format + "_n" + tiles + "_r" + groups + (tokenGroups > 1 ? "_t" + tokenGroups : "");
        int cluster = SkinnyPlan.largestCluster(tiles, groups, Integer.MAX_VALUE / 2, largestCluster, tokenGroups);
        boolean granted = true;
        for (boolean gated : new boolean[] {false, true}) {
            String name = (gated ? "kiln_skinny_silu_" : "kiln_skinny_") + suffix;
            MemorySegment f = function(name);
            skinnyEntries.put(name, f);
            skinnyKinds.put(f, new SkinnyEntry(format, gated));
            granted &= driver.allowDynamicSharedBytes(f, SkinnyPlan.sharedBytes(tiles, groups, cluster, tokenGroups));
        }
        return granted;
    }

    private boolean isSkinnyPlain(MemorySegment function) {
        SkinnyEntry entry = skinnyKinds.get(function);
        return entry != null && !entry.gated();
    }

    private boolean isSkinnyGated(MemorySegment function) {
        SkinnyEntry entry = skinnyKinds.get(function);
        return entry != null && entry.gated();
    }

    /** The weight format of a skinny entry. */
    private String skinnyFormat(MemorySegment function) {
        return skinnyKinds.get(function).format();
    }

    /**
     * Argument slots of the GEMV kernels that a fusion reads or rewrites (the generic kernels have the first eight;
     * the token-specialised ones add the residual to add into and the fused norm's scale, eps and output).
     */
    private static final int GEMV_X = 1, GEMV_OUT = 2, GEMV_ROWS = 3, GEMV_COLUMNS = 4, GEMV_TOKENS = 5, GEMV_BIAS = 7,
            GEMV_RESIDUAL = 8, GEMV_SCALE = 9, GEMV_EPS = 10, GEMV_NORMED = 11;

    /** Argument slots of kiln_gemv3: the shared operands, four slots per segment, then the fused norm's. */
    private static final int MULTI_X = 0, MULTI_COLUMNS = 1, MULTI_TOKENS = 2, MULTI_SEGMENTS = 3, MULTI_SCALE = 15,
            MULTI_EPS = 16, MULTI_NORMED = 17;
    private static final int SEGMENT_W = 0, SEGMENT_OUT = 1, SEGMENT_ROWS = 2, SEGMENT_BIAS = 3;

    /** Argument slots of kiln_rms_norm: x, scale, eps, out, n, hi, lo (one block per row). */
    private static final int NORM_X = 0, NORM_SCALE = 1, NORM_EPS = 2, NORM_OUT = 3, NORM_N = 4, NORM_HI = 5;
    /** Argument slots of kiln_add_rms_norm: acc, delta, scale, eps, out, n, hi, lo. */
    private static final int ADD_NORM_OUT = 4, ADD_NORM_N = 5, ADD_NORM_HI = 6;

    /**
     * Argument slots of kiln_skinny: the parts, columns, tokens, then per segment kiln_gemv3's four (weight, output,
     * rows, bias) and the weight's scales, then the scales' geometry.
     */
    private static final int SKINNY_HI = 0, SKINNY_LO = 1, SKINNY_COLUMNS = 2, SKINNY_TOKENS = 3, SKINNY_SEGMENTS = 4,
            SKINNY_SEGMENT_SLOTS = 5, SEGMENT_SCALES = 4, SKINNY_SCALE_ROWS = 19, SKINNY_SCALE_COLUMNS = 20;
    /** Argument slots of kiln_skinny_silu that a fusion reads or rewrites: rows, out and its parts. */
    private static final int GATED_ROWS = 6, GATED_OUT = 7, GATED_OUT_HI = 8;

    /**
     * The held launch if it is an RMSNorm of exactly {@code tokens} rows of {@code columns} whose output is x, not
     * in place, and apart from the product's output: a product of x can then normalise on the fly instead.
     */
    private StepRecorder.Launch heldNormFeeding(long x, int columns, int tokens, long out, long outBytes) {
        StepRecorder.Launch last = context.recorder().lastLaunch();
        if (last == null || !last.function().equals(rmsNorm) || last.argument(NORM_OUT) != x
                || (int) last.argument(NORM_N) != columns || last.gridX() != tokens) {
            return null;
        }
        long bytes = 4L * tokens * columns;
        long raw = last.argument(NORM_X);
        if (!disjoint(raw, bytes, x, bytes) || !disjoint(out, outBytes, x, bytes) || !disjoint(out, outBytes, raw, bytes)) {
            return null;
        }
        return last;
    }

    /**
     * Joins this product to the held launch when that is a product of the same activations (q, k and v; gate and
     * up) with room for another segment. Only when no output overlaps x or another output: one launch computes all
     * of them at once, so none may read what another writes.
     */
    private boolean mergeIntoHeldGemv(TokenGemvs family, long w, long x, long out, int rows, int columns, int tokens) {
        StepRecorder.Launch last = context.recorder().lastLaunch();
        if (last == null) return false;
        long[][] segments; // {w, out, rows, bias}
        long raw, scale, eps, normed; // the held launch's input and fused norm (scale 0: none; x is then its input)
        if (family.isSingle(last.function(), tokens)) {
            raw = last.argument(GEMV_X);
            scale = last.argument(GEMV_SCALE);
            eps = last.argument(GEMV_EPS);
            normed = last.argument(GEMV_NORMED);
            if ((scale == 0 ? raw : normed) != x || (int) last.argument(GEMV_COLUMNS) != columns
                    || last.argument(GEMV_RESIDUAL) != 0) {
                return false;
            }
            segments = new long[][] {{last.argument(0), last.argument(GEMV_OUT), (int) last.argument(GEMV_ROWS), last.argument(GEMV_BIAS)}};
        } else if (family.isMulti(last.function(), tokens)) {
            raw = last.argument(MULTI_X);
            scale = last.argument(MULTI_SCALE);
            eps = last.argument(MULTI_EPS);
            normed = last.argument(MULTI_NORMED);
            if ((scale == 0 ? raw : normed) != x || (int) last.argument(MULTI_COLUMNS) != columns) return false;
            if (last.argument(MULTI_SEGMENTS + 8 + SEGMENT_ROWS) != 0) return false; // full
            segments = new long[2][];
            for (int i = 0; i < 2; i++) {
                int base = MULTI_SEGMENTS + 4 * i;
                segments[i] = new long[] {last.argument(base), last.argument(base + 1), last.argument(base + 2), last.argument(base + 3)};
            }
            if (segments[1][2] == 0) segments = new long[][] {segments[0]};
        } else {
            return false;
        }
        long xBytes = 4L * tokens * columns;
        if (!disjoint(out, 4L * tokens * rows, x, xBytes) || !disjoint(out, 4L * tokens * rows, raw, xBytes)) return false;
        for (long[] segment : segments) {
            long bytes = 4L * tokens * segment[2];
            if (!disjoint(segment[1], bytes, x, xBytes) || !disjoint(segment[1], bytes, out, 4L * tokens * rows)) return false;
        }
        long[][] all = new long[3][];
        for (int i = 0; i < 3; i++) {
            all[i] = i < segments.length ? segments[i] : i == segments.length ? new long[] {w, out, rows, 0} : new long[4];
        }
        long totalRows = all[0][2] + all[1][2] + all[2][2];
        int warps = GEMV_THREADS / 32;
        LaunchArguments a = args().ptr(raw).i32(columns).i32(tokens);
        for (long[] segment : all) a.ptr(segment[0]).ptr(segment[1]).i32((int) segment[2]).ptr(segment[3]);
        a.ptr(scale).slot(eps).ptr(normed);
        if (totalRows < SPLIT_BELOW_ROWS) {
            return a.replace(last, family.multiSplit[tokens - 1], "kiln_gemv3_split",
                    Math.ceilDiv((int) totalRows, family.splitRowsOf(tokens)), 1, GEMV_THREADS, 0);
        }
        return a.replace(last, family.multi[tokens - 1], "kiln_gemv3",
                Math.ceilDiv((int) totalRows, warps * family.multiRows()), 1, GEMV_THREADS, 0);
    }

    /**
     * Rows one block of {@code kiln_gemv_split} and {@code kiln_gemv3_split} computes for a token count: two from two
     * tokens on, so that each activation chunk loaded serves two weight rows (SPLIT_ROWS in the source).
     */
    static int splitRows(int tokens) {
        return tokens >= 4 ? 4 : tokens >= 2 ? 2 : 1;
    }

    /**
     * Rows one warp of {@code kiln_gemv} computes for a token count (row pairs of {@code kiln_gemv_silu}): two from two
     * tokens on, as {@link #splitRows} (WARP_ROWS in the source).
     */
    static int warpRows(int tokens) {
        return tokens >= 4 ? 4 : tokens >= 2 ? 2 : 1;
    }

    /** Gate/up row pairs one warp of {@code kiln_gemv_silu} computes: two from two tokens on (SILU_PAIRS). */
    static int siluPairs(int tokens) {
        return tokens >= 2 ? 2 : 1;
    }

    /** Whether the byte ranges {@code [a, a + aBytes)} and {@code [b, b + bBytes)} do not overlap. */
    static boolean disjoint(long a, long aBytes, long b, long bBytes) {
        return a + aBytes <= b || b + bBytes <= a;
    }

    /** The family whose multi-segment kernel the function is, or null. */
    private TokenGemvs multiFamily(MemorySegment function) {
        return multiFamilies.get(function);
    }

    private boolean isGemv3(MemorySegment function) {
        return multiFamily(function) != null;
    }

    /** The token-specialised GEMVs of any format (warp or block per row), which take a residual and a fused norm. */
    private boolean isTokenGemv(MemorySegment function) {
        return singleFamilies.containsKey(function);
    }

    private boolean isGemv(MemorySegment function) {
        return function.equals(gemvBf16) || function.equals(gemvF32) || isTokenGemv(function);
    }

    /**
     * Writes the new tokens' keys (and values, when {@code value != 0}) into their cache slots; a bf16 cache
     * ({@code bf16Cache}) stores them rounded to nearest even.
     */
    public void writeKv(long key, long value, long keys, long values, long slots, int tokens, int kvHeads, int keyDim,
                        int valueDim, int blockSize, boolean bf16Cache) {
        if (tokens == 0) return;
        args().ptr(key).ptr(value).ptr(keys).ptr(values).ptr(slots).i32(kvHeads).i32(keyDim).i32(valueDim).i32(blockSize)
                .launch(bf16Cache ? writeKvBf16 : writeKv, bf16Cache ? "kiln_write_kv_bf16" : "kiln_write_kv", tokens, 1,
                        THREADS, 0);
    }

    /** Dynamic shared memory of the attention kernel for a key width. */
    public static int attentionSharedBytes(int keyDim) {
        return ATTENTION_THREADS * Long.BYTES + ATTENTION_THREADS * Float.BYTES + 32 * Float.BYTES + keyDim * Float.BYTES;
    }

    /**
     * Causal attention of every (token, head) over the paged cache, one block each over the whole context; sequence
     * s's block table starts {@code s * tableStride} entries into {@code tables}. {@code bf16Cache}: the cache stores
     * bf16 elements (else f32).
     */
    public void pagedAttention(long query, long out, long keys, long values, long tokenSequence, long tokenPosition,
                               long tables, int tableStride, int tokens, int heads, int kvHeads, int keyDim,
                               int valueDim, int valueStride, int blockSize, float scale, boolean bf16Cache) {
        if (tokens == 0) return;
        args().ptr(query).ptr(out).ptr(keys).ptr(values).ptr(tokenSequence).ptr(tokenPosition).ptr(tables).i32(tableStride)
                .i32(heads).i32(kvHeads).i32(keyDim).i32(valueDim).i32(valueStride).i32(blockSize).f32(scale)
                .launch(bf16Cache ? pagedAttentionBf16 : pagedAttention,
                        bf16Cache ? "kiln_paged_attention_bf16" : "kiln_paged_attention", tokens, heads,
                        ATTENTION_THREADS, attentionSharedBytes(keyDim));
    }

    /**
     * Causal attention with each context split into {@code plan.chunk()}-key chunks, one block per (token, KV head,
     * head block, chunk) serving all its query heads; with several splits the blocks write partial records into
     * {@code partials} ({@link SplitAttentionPlan#partialBytes}) and a second kernel merges them into {@code out}.
     * Values live in the keys when {@code values == keys}. {@code bf16Cache}: the cache stores bf16 elements (else
     * f32; the plan and the partial records are the same for both).
     *
     * <p>With {@code newKeys} not 0 the cache write is fused in ({@link #writeKv}'s key, value and slots arguments;
     * {@code newValues} 0 when the values live in the keys): allowed only when every token is its sequence's one
     * query token of the step, whose own entry is then taken from those rows and stored by the kernel, while every
     * other entry was cached by earlier steps. When the held launch before is then the {@code kiln_rotary2} of
     * exactly these queries and keys, the kernel rotates them itself and takes that launch's place (the rows in
     * memory stay unrotated; system property {@code kiln.cuda.attention.foldRotary=false} keeps the rotation apart).
     */
    public void pagedAttentionSplit(SplitAttentionPlan plan, long query, long out, long partials, long keys, long values,
                                    long tokenSequence, long tokenPosition, long tables, int tableStride, int tokens,
                                    int heads, int kvHeads, int keyDim, int valueDim, int valueStride, int blockSize,
                                    float scale, boolean bf16Cache, long newKeys, long newValues, long slots) {
        if (tokens == 0) return;
        MemorySegment function = bf16Cache ? pagedAttentionSplitBf16 : pagedAttentionSplit;
        String name = bf16Cache ? "kiln_paged_attention_split_bf16" : "kiln_paged_attention_split";
        StepRecorder.Launch last = newKeys != 0 && FOLD_ROTARY ? context.recorder().lastLaunch() : null;
        if (rotatesExactly(last, tokens, query, heads, newKeys, kvHeads, keyDim)
                && splitAttentionArguments(plan, query, out, partials, keys, values, tokenSequence, tokenPosition, tables,
                        tableStride, heads, kvHeads, keyDim, valueDim, valueStride, blockSize, scale, newKeys, newValues, slots)
                        .ptr(last.argument(6)).ptr(last.argument(7)).ptr(last.argument(8)).i32((int) last.argument(10))
                        .i32((int) last.argument(11)).i32((int) last.argument(12))
                        .replace(last, function, name, plan.rows(tokens, kvHeads), plan.splits(), SplitAttentionPlan.THREADS,
                                plan.sharedBytes(), plan.clusterSize())) {
            combine(plan, partials, out, tokenPosition, tokens, heads, valueDim);
            return;
        }
        splitAttentionArguments(plan, query, out, partials, keys, values, tokenSequence, tokenPosition, tables, tableStride,
                heads, kvHeads, keyDim, valueDim, valueStride, blockSize, scale, newKeys, newValues, slots)
                .ptr(0).ptr(0).ptr(0).i32(0).i32(0).i32(0)
                .launch(function, name, plan.rows(tokens, kvHeads), plan.splits(), SplitAttentionPlan.THREADS, plan.sharedBytes(),
                        plan.clusterSize());
        combine(plan, partials, out, tokenPosition, tokens, heads, valueDim);
    }

    /**
     * The largest cluster (a power of two up to {@link SplitAttentionPlan#MAX_CLUSTER}) that the attention kernels
     * can run in on this device: sizes above the portable 8 need the driver's consent for each kernel, and every size
     * must fit the device's GPCs with the kernels' threads and shared memory (the split kernel's at its largest).
     */
    private int largestAttentionCluster(CudaDriver driver) {
        for (int size = SplitAttentionPlan.MAX_CLUSTER; size > 1; size /= 2) {
            if (size > 8 && !(driver.allowNonPortableClusterSize(pagedAttentionSplit)
                    && driver.allowNonPortableClusterSize(pagedAttentionSplitBf16)
                    && driver.allowNonPortableClusterSize(decodeAttentionBf16))) {
                continue;
            }
            if (driver.maxActiveClusters(pagedAttentionSplit, SplitAttentionPlan.THREADS, DEFAULT_SHARED_BYTES, size) > 0
                    && driver.maxActiveClusters(pagedAttentionSplitBf16, SplitAttentionPlan.THREADS, DEFAULT_SHARED_BYTES, size) > 0
                    && driver.maxActiveClusters(decodeAttentionBf16, DecodeAttentionPlan.THREADS, 0, size) > 0) {
                return size;
            }
        }
        return 1;
    }

    /** Most blocks of a split attention cluster on this device, for {@link SplitAttentionPlan#of}; 1 without clusters. */
    public int largestAttentionCluster() {
        return largestAttentionCluster;
    }

    /**
     * A decode step's attention over a bf16 cache by {@code kiln_decode_attention_bf16} (see {@link DecodeAttentionPlan}
     * for what it takes): every token its sequence's one query token, token t being sequence t, its own entry taken
     * from {@code newKeys} and {@code newValues} and stored at its slot by the kernel. When the held launch before is
     * the {@code kiln_rotary2} of exactly these queries and keys and its rotation is one the kernel folds in
     * ({@link DecodeAttentionPlan#foldsRotary}), the kernel rotates them itself and takes that launch's place, as
     * {@link #pagedAttentionSplit} does.
     */
    public void decodeAttention(DecodeAttentionPlan plan, long query, long out, long keys, long values, long tokenPosition,
                                long tables, int tableStride, int tokens, int heads, int kvHeads, int blockSize, float scale,
                                long newKeys, long newValues, long slots) {
        if (tokens == 0) return;
        String name = "kiln_decode_attention_bf16";
        int keyDim = DecodeAttentionPlan.HEAD_DIM;
        StepRecorder.Launch last = FOLD_ROTARY ? context.recorder().lastLaunch() : null;
        if (rotatesExactly(last, tokens, query, heads, newKeys, kvHeads, keyDim)
                && DecodeAttentionPlan.foldsRotary((int) last.argument(10), (int) last.argument(11),
                        (int) last.argument(12) != 0)
                && decodeAttentionArguments(plan, query, out, keys, values, tokenPosition, tables, tableStride, heads,
                        kvHeads, blockSize, scale, newKeys, newValues, slots)
                        .ptr(last.argument(6)).ptr(last.argument(7)).ptr(last.argument(8)).i32((int) last.argument(11))
                        .i32((int) last.argument(12))
                        .replace(last, decodeAttentionBf16, name, tokens * kvHeads, plan.splits(), DecodeAttentionPlan.THREADS,
                                0, plan.splits())) {
            return;
        }
        decodeAttentionArguments(plan, query, out, keys, values, tokenPosition, tables, tableStride, heads, kvHeads,
                blockSize, scale, newKeys, newValues, slots).ptr(0).ptr(0).ptr(0).i32(0).i32(0)
                .launch(decodeAttentionBf16, name, tokens * kvHeads, plan.splits(), DecodeAttentionPlan.THREADS, 0,
                        plan.splits());
    }

    /**
     * The largest group of query heads a KV head, from {@code smallest} to {@code largest}, whose block's shared
     * memory ({@link PrefillTiles#sharedBytes}) the device grants the prefill entry; 0 for none.
     */
    private static int largestGrantedGroup(CudaDriver driver, MemorySegment entry, int smallest, int largest) {
        for (int group = largest; group >= smallest; group--) {
            if (driver.allowDynamicSharedBytes(entry, PrefillTiles.sharedBytes(group))) return group;
        }
        return 0;
    }

    /**
     * Whether {@link #prefillAttention} runs here for this many query heads a KV head: it needs compute capability 8.0
     * (cp.async, ldmatrix, bf16 tensor-core products) and the shared memory of a block of that many warps.
     */
    public boolean prefillAttentionAvailable(int group) {
        return group >= 1 && (group <= PrefillTiles.MAX_NARROW_GROUP ? group <= prefillMaxGroup
                : group <= prefillMaxWideGroup);
    }

    /**
     * Causal attention of the tiles' tokens (see {@link PrefillTiles}) over a bf16 cache of 128-wide heads on the
     * tensor cores: {@code tiles} is the device copy of their (first token, count) pairs; the other arguments are the
     * batch's, as for {@link #pagedAttention}.
     */
    public void prefillAttention(PrefillTiles work, PrefillTiles.ContextSplit split, long tiles, long partials,
                                 long query, long out, long keys, long values, long tokenSequence, long tokenPosition,
                                 long tablesPointer, int tableStride, int heads, int kvHeads, int blockSize, float scale) {
        if (work.count() == 0) return;
        boolean wide = heads / kvHeads > PrefillTiles.MAX_NARROW_GROUP;
        args().ptr(query).ptr(out).ptr(keys).ptr(values).ptr(tiles).ptr(tokenSequence).ptr(tokenPosition)
                .ptr(tablesPointer).i32(tableStride).i32(heads).i32(kvHeads).i32(blockSize).f32(scale)
                .ptr(split.splits() > 1 ? partials : 0).i32(work.first()).i32(split.chunk()).i32(split.splits())
                .launch(wide ? prefillAttentionWideBf16 : prefillAttentionBf16,
                        wide ? "kiln_prefill_attention_wide_bf16" : "kiln_prefill_attention_bf16", work.count(), kvHeads * split.splits(),
                        32 * (heads / kvHeads), PrefillTiles.sharedBytes(heads / kvHeads));
        if (split.splits() == 1) return;
        // The tiles' tokens from work.first() on: their records, positions and output rows.
        launchCombine(partials, out + (long) work.first() * heads * PrefillTiles.HEAD_DIM * Float.BYTES,
                tokenPosition + (long) work.first() * Integer.BYTES, work.tokens(), heads, PrefillTiles.HEAD_DIM,
                split.chunk(), split.splits());
    }

    /** The decode kernel's arguments up to its rotary ones. */
    private LaunchArguments decodeAttentionArguments(DecodeAttentionPlan plan, long query, long out, long keys, long values,
            long tokenPosition, long tables, int tableStride, int heads, int kvHeads, int blockSize, float scale,
            long newKeys, long newValues, long slots) {
        return args().ptr(query).ptr(out).ptr(keys).ptr(values).ptr(tokenPosition).ptr(tables).i32(tableStride)
                .i32(heads).i32(kvHeads).i32(blockSize).i32(plan.chunk()).f32(scale).ptr(newKeys).ptr(newValues).ptr(slots);
    }

    /**
     * Whether {@code last} is the {@code kiln_rotary2} of exactly a decode step's queries and new keys (all their heads,
     * rows of {@code keyDim}), which the attention kernels may take in. Its arguments 6-8 are then the positions and
     * the cos and sin tables, 10-12 the rotary offset, half and layout.
     */
    private boolean rotatesExactly(StepRecorder.Launch last, int tokens, long query, int heads, long newKeys, int kvHeads,
                                   int keyDim) {
        return last != null && last.function().equals(rotary2) && last.gridX() == tokens && last.argument(0) == query
                && (int) last.argument(1) == heads * keyDim && (int) last.argument(2) == heads
                && last.argument(3) == newKeys && (int) last.argument(4) == kvHeads * keyDim
                && (int) last.argument(5) == kvHeads && (int) last.argument(9) == keyDim;
    }

    /** Whether a decode step's attention may take the layer's rotary in (see {@link #pagedAttentionSplit}). */
    static final boolean FOLD_ROTARY = Boolean.parseBoolean(System.getProperty("kiln.cuda.attention.foldRotary", "true"));

    /** The split kernel's arguments up to its rotary ones. */
    private LaunchArguments splitAttentionArguments(SplitAttentionPlan plan, long query, long out, long partials, long keys,
            long values, long tokenSequence, long tokenPosition, long tables, int tableStride, int heads, int kvHeads,
            int keyDim, int valueDim, int valueStride, int blockSize, float scale, long newKeys, long newValues, long slots) {
        return args().ptr(query).ptr(out).ptr(partials).ptr(keys).ptr(values).ptr(tokenSequence).ptr(tokenPosition).ptr(tables)
                .i32(tableStride).i32(heads).i32(kvHeads).i32(plan.headsPerBlock()).i32(keyDim).i32(valueDim)
                .i32(valueStride).i32(blockSize).i32(plan.chunk()).i32(plan.tile()).f32(scale)
                .ptr(newKeys).ptr(newValues).ptr(slots);
    }

    /** The merge of the split kernel's partial records, when it wrote some. */
    private void combine(SplitAttentionPlan plan, long partials, long out, long tokenPosition, int tokens, int heads,
                         int valueDim) {
        if (plan.splits() == 1 || plan.clustered()) return;
        launchCombine(partials, out, tokenPosition, tokens, heads, valueDim, plan.chunk(), plan.splits());
    }

    /**
     * {@code kiln_paged_attention_combine}: merges the partial records of {@code splits} chunks of {@code chunk} keys
     * for each of {@code tokens} tokens and {@code heads} heads (records, positions and output rows from token 0 of
     * the pointers given).
     */
    private void launchCombine(long partials, long out, long tokenPosition, int tokens, int heads, int valueDim, int chunk,
                               int splits) {
        args().ptr(partials).ptr(out).ptr(tokenPosition).i32(heads).i32(valueDim).i32(chunk).i32(splits)
                .launch(pagedAttentionCombine, "kiln_paged_attention_combine", tokens, heads,
                        SplitAttentionPlan.COMBINE_THREADS, SplitAttentionPlan.combineSharedBytes(splits));
    }

    private static int blocks(long n) {
        return (int) Math.min(MAX_GRID, (n + THREADS - 1) / THREADS);
    }

    private static int roundUp(int threads) {
        return Math.max(32, (threads + 31) / 32 * 32);
    }

    private LaunchArguments args() {
        return arguments.get().reset();
    }

    @Override
    public void close() {
        modules.close();
    }
}
