package dev.kiln.backend.cuda.internal;

import dev.kiln.backend.cuda.bindings.CudaDriver;
import java.lang.foreign.MemorySegment;

/**
 * The grouped products ({@value #SOURCE}: DeepSeekMoE's routed experts, MLA's per-head products), kernels that
 * {@link CudaContext} loads when the first layer that needs one is built, each behind a method that knows its parameter list and launch shape.
 * Launches are held by the context's {@link StepRecorder} (so they join its graphs) as programmatic dependent
 * launches, like those of {@link Kernels}. Arguments are not checked here: {@link CudaRoutedExperts} and the backend check them.
 */
public final class GroupedKernels implements AutoCloseable {
    /** The kernel source, a resource next to {@link KernelCompiler}. */
    public static final String SOURCE = "grouped_kernels.cu";
    /** The kernel names the source's units must define (checked by the compilation test without a GPU). */
    public static final String[] NAMES = {"kiln_route_experts", "kiln_plan_experts", "kiln_experts_gate_up_bf16",
            "kiln_experts_down_bf16", "kiln_experts_gate_up_fp8", "kiln_experts_down_fp8", "kiln_experts_gate_up_int8",
            "kiln_experts_down_int8", "kiln_experts_gate_up_int4_g64", "kiln_experts_down_int4_g64",
            "kiln_experts_gate_up_int4_g128", "kiln_experts_down_int4_g128", "kiln_experts_combine",
            "kiln_gemv_heads_bf16", "kiln_gemv_heads_f32"};
    /** The block size of the FP8 expert weights the grouped products take (FP8_BLOCK in the source). */
    static final int FP8_BLOCK = 128;

    /**
     * The expert weight formats of the grouped products, as their kernels' names end (see the source), with the INT4
     * group size of each (0: not INT4).
     */
    enum ExpertFormat {
        BF16("bf16", 0), FP8("fp8", 0), INT8("int8", 0), INT4_G64("int4_g64", 64), INT4_G128("int4_g128", 128);

        final String suffix;
        final int int4GroupSize;

        ExpertFormat(String suffix, int int4GroupSize) {
            this.suffix = suffix;
            this.int4GroupSize = int4GroupSize;
        }
    }
    /** The most routed experts (MAX_EXPERTS in the source; one plan thread each). */
    static final int MAX_EXPERTS = 1024;
    /** The most experts per token (MAX_PER_TOKEN). */
    static final int MAX_PER_TOKEN = 16;
    /** The most expert groups (MAX_GROUPS). */
    static final int MAX_GROUPS = 64;
    /** The most choices (tokens x experts per token) one plan stages in its shared memory: 32 KB. */
    static final int MAX_CHOICES = 8192;
    private static final int ROUTE_THREADS = 256;
    private static final int PLAN_THREADS = 1024;
    private static final int EXPERT_THREADS = 128;
    private static final int EXPERT_WARPS = EXPERT_THREADS / 32;
    private static final int THREADS = 256;
    private static final int MAX_GRID = 1 << 20;

    private final CudaDriver driver;
    private final KernelModules modules;
    private final MemorySegment route, plan, combine, heads, headsF32;
    /** The gate/up and down products by expert weight format. */
    private final java.util.EnumMap<ExpertFormat, MemorySegment> gateUp = new java.util.EnumMap<>(ExpertFormat.class),
            down = new java.util.EnumMap<>(ExpertFormat.class);
    private final ThreadLocal<LaunchArguments> arguments;

    GroupedKernels(CudaContext context, KernelModules modules) {
        this.driver = context.driver();
        this.modules = modules;
        this.arguments = ThreadLocal.withInitial(() -> new LaunchArguments(context));
        route = modules.function("kiln_route_experts");
        plan = modules.function("kiln_plan_experts");
        for (ExpertFormat format : ExpertFormat.values()) {
            gateUp.put(format, modules.function("kiln_experts_gate_up_" + format.suffix));
            down.put(format, modules.function("kiln_experts_down_" + format.suffix));
        }
        combine = modules.function("kiln_experts_combine");
        heads = modules.function("kiln_gemv_heads_bf16");
        headsF32 = modules.function("kiln_gemv_heads_f32");
    }

    /**
     * Routes {@code tokens} tokens (logits {@code [tokens, experts]}) into {@code perToken} choices each: scoring 0
     * softmax, 1 sigmoid; selection 0 greedy, 1 group-limited greedy, 2 noaux_tc (bias: a selection bias per expert).
     */
    void route(long logits, int experts, int perToken, int tokens, int scoring, int selection, int groups,
               int groupsPerToken, boolean normalize, float scaling, long bias, long choiceExpert, long choiceWeight) {
        args().ptr(logits).i32(experts).i32(perToken).i32(scoring).i32(selection).i32(groups)
                .i32(groupsPerToken).i32(normalize ? 1 : 0).f32(scaling).ptr(bias).ptr(choiceExpert).ptr(choiceWeight)
                .launch(route, "kiln_route_experts", tokens, 1, threadsFor(experts, ROUTE_THREADS), 0);
    }

    /** Sorts {@code choices} choices by expert into pairs and lists the active experts (see the source). */
    void plan(long choiceExpert, long choiceWeight, int choices, int perToken, int experts, long activeCount,
              long activeExpert, long activeStart, long activeSize, long pairToken, long pairWeight, long choicePair) {
        args().ptr(choiceExpert).ptr(choiceWeight).i32(choices).i32(perToken).i32(experts).ptr(activeCount)
                .ptr(activeExpert).ptr(activeStart).ptr(activeSize).ptr(pairToken).ptr(pairWeight).ptr(choicePair)
                .launch(plan, "kiln_plan_experts", 1, 1, threadsFor(experts, PLAN_THREADS), 4 * choices);
    }

    /**
     * {@code hidden[q] = silu(gate_e · x[token q]) * up_e · x[token q]} for every pair q of every active expert e, of
     * at most {@code maxActive}: gate and up tables of device pointers to {@code [width, columns]} weights in
     * {@code format}: bf16, or codes followed by their scales ({@link Fp8Weight}, {@link QuantizedWeight}).
     */
    void gateUp(ExpertFormat format, long x, int columns, long gateTable, long upTable, int width, int maxActive, long activeCount,
                long activeExpert, long activeStart, long activeSize, long pairToken, long hidden) {
        args().ptr(x).i32(columns).ptr(gateTable).ptr(upTable).i32(width).ptr(activeCount).ptr(activeExpert)
                .ptr(activeStart).ptr(activeSize).ptr(pairToken).ptr(hidden)
                .launch(gateUp.get(format), "kiln_experts_gate_up_" + format.suffix,
                        (width + EXPERT_WARPS - 1) / EXPERT_WARPS, maxActive, EXPERT_THREADS, 0);
    }

    /** {@code out[q] = pairWeight[q] · down_e · hidden[q]} for every pair q of every active expert e (formats as above). */
    void down(ExpertFormat format, long hidden, int width, long downTable, int rows, int maxActive, long activeCount,
              long activeExpert, long activeStart, long activeSize, long pairWeight, long out) {
        args().ptr(hidden).i32(width).ptr(downTable).i32(rows).ptr(activeCount).ptr(activeExpert).ptr(activeStart)
                .ptr(activeSize).ptr(pairWeight).ptr(out)
                .launch(down.get(format), "kiln_experts_down_" + format.suffix,
                        (rows + EXPERT_WARPS - 1) / EXPERT_WARPS, maxActive, EXPERT_THREADS, 0);
    }

    /** {@code residual[t] += Σ_j out[choicePair[t, j]]} for {@code tokens} rows of {@code columns}. */
    void combine(long out, long choicePair, int perToken, int columns, long residual, int tokens) {
        long n = (long) tokens * columns;
        args().ptr(out).ptr(choicePair).i32(perToken).i32(columns).ptr(residual).i64(n)
                .launch(combine, "kiln_experts_combine", (int) Math.min(MAX_GRID, (n + THREADS - 1) / THREADS), 1,
                        THREADS, 0);
    }

    /**
     * For every head h of {@code count} ({@code table}: device pointers to bf16, or with {@code f32} f32,
     * {@code [rows, columns]} weights) and token t of {@code tokens}:
     * {@code out[t, outOffset + h outStride + r] = W_h[r] · x[t, inOffset + h inStride ..]}.
     */
    public void gemvPerHead(boolean f32, long table, int count, long x, int xRow, int inOffset, int inStride, long out, int outRow,
                            int outOffset, int outStride, int rows, int columns, int tokens) {
        args().ptr(table).ptr(x).i32(xRow).i32(inOffset).i32(inStride).ptr(out).i32(outRow).i32(outOffset)
                .i32(outStride).i32(rows).i32(columns).i32(tokens)
                .launch(f32 ? headsF32 : heads, f32 ? "kiln_gemv_heads_f32" : "kiln_gemv_heads_bf16",
                        (rows + EXPERT_WARPS - 1) / EXPERT_WARPS, count, EXPERT_THREADS, 0);
    }

    /**
     * A thread per expert, in whole warps and a power of two (the plan's scan), at most {@code most}: 64 experts take
     * two warps, whose barriers and reductions cost a fraction of a full block's (the routing and plan of a decode
     * step are latency, not work).
     */
    private static int threadsFor(int experts, int most) {
        return Math.min(most, Math.max(32, Integer.highestOneBit(Math.max(1, experts - 1)) << 1));
    }

    private LaunchArguments args() {
        return arguments.get().reset();
    }

    /** Unloads the modules. */
    @Override
    public void close() {
        modules.close();
    }
}
