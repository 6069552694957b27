package dev.kiln.backend.cuda.internal;

import dev.kiln.api.backend.ExpertRouting;
import dev.kiln.api.backend.RoutedExperts;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * One layer's routed experts on the device ({@link GroupedKernels}): routing, sorting the choices by expert, the
 * experts' gate/up and down products over their own tokens, and the weighted sum into the residual, five launches
 * with nothing read back, so a mixture-of-experts decode step is recorded and replayed as graphs like a dense one.
 * Every active expert's weights are read once per call for all of its tokens; an expert no token chose is not read.
 * The experts' weights are bf16, FP8 in blocks of 128 x 128 (DeepSeek-V3's checkpoints, and the {@code fp8}
 * quantizer's), INT8 or INT4 in groups of 64 or 128 columns ({@code weight_only_int8}, {@code weight_only_int4}), whose
 * codes the products widen in registers.
 *
 * <p>Holds device tables of the experts' weight addresses and a workspace for {@link #capacity()} tokens; the weights
 * stay with their owner and must outlive this object.
 */
public final class CudaRoutedExperts implements RoutedExperts {
    /** Whether mixture-of-experts layers route on the device (system property {@code kiln.cuda.deviceExperts}). */
    static final boolean ENABLED = Boolean.parseBoolean(System.getProperty("kiln.cuda.deviceExperts", "true"));
    /**
     * The most tokens a call takes (system property {@code kiln.cuda.deviceExpertTokens}, default 256): decode steps
     * and short prefill chunks. Above it the model routes on the host, where each expert's tokens go through cuBLAS.
     */
    static final int DEVICE_TOKENS = Math.max(1, Integer.getInteger("kiln.cuda.deviceExpertTokens", 256));
    private static final long ALIGNMENT = 256;

    private final CudaContext context;
    private final GroupedKernels kernels;
    private final int experts, perToken, hidden, width, capacity;
    private final int scoring, selection, groups, groupsPerToken;
    private final boolean normalize;
    /** The experts' weight format. */
    private final GroupedKernels.ExpertFormat format;
    private final float scaling;
    private final long workspace;
    private final long gateTable, upTable, downTable, bias;
    private final long choiceExpert, choiceWeight, activeCount, activeExpert, activeStart, activeSize;
    private final long pairToken, pairWeight, choicePair, hiddenRows, outRows;
    private final AtomicBoolean closed = new AtomicBoolean();

    /**
     * The device path for these experts, or {@code null} when it cannot take them: weights other than all of one format
     * ({@link #formatOf}), or more experts, groups or experts per token than its kernels hold; or when switched off
     * ({@code -Dkiln.cuda.deviceExperts=false}).
     */
    public static CudaRoutedExperts create(CudaContext context, ExpertRouting routing, Weight[] gate, Weight[] up,
                                           Weight[] down, int capacity) {
        int n = routing.experts();
        if (!ENABLED || n > GroupedKernels.MAX_EXPERTS || routing.perToken() > GroupedKernels.MAX_PER_TOKEN
                || routing.groups() > GroupedKernels.MAX_GROUPS || gate.length != n || up.length != n || down.length != n) {
            return null;
        }
        int hidden = gate[0].columns(), width = gate[0].rows();
        GroupedKernels.ExpertFormat format = formatOf(gate[0]);
        if (format == null) return null;
        for (int e = 0; e < n; e++) {
            if (!takes(format, gate[e], width, hidden) || !takes(format, up[e], width, hidden)
                    || !takes(format, down[e], hidden, width)) {
                return null;
            }
        }
        int tokens = Math.min(Math.min(capacity, DEVICE_TOKENS), GroupedKernels.MAX_CHOICES / routing.perToken());
        if (tokens < 1) return null;
        return new CudaRoutedExperts(context, routing, format, gate, up, down, tokens);
    }

    /**
     * The format in which the grouped products would read a weight, judged by its kind alone ({@link #takes} checks
     * the rest): FP8, INT8, INT4 of a group size they have kernels for, else bf16; null for INT4 in other groups.
     */
    private static GroupedKernels.ExpertFormat formatOf(Weight w) {
        if (w instanceof Fp8Weight) return GroupedKernels.ExpertFormat.FP8;
        if (w instanceof QuantizedWeight q) {
            if (q.storage() == QuantizedWeight.Format.INT8) return GroupedKernels.ExpertFormat.INT8;
            for (GroupedKernels.ExpertFormat f : GroupedKernels.ExpertFormat.values()) {
                if (f.int4GroupSize == q.groupSize()) return f;
            }
            return null;
        }
        return GroupedKernels.ExpertFormat.BF16;
    }

    /**
     * Whether a weight of {@code rows} x {@code columns} is in {@code format} as the grouped products read it: whole
     * 16-byte chunks in every row (columns a multiple of 8 for bf16, 16 for FP8 and INT8, 32 for INT4).
     */
    private static boolean takes(GroupedKernels.ExpertFormat format, Weight w, int rows, int columns) {
        return switch (format) {
            case BF16 -> columns % 8 == 0 && DenseWeight.isBf16(w, rows, columns);
            case FP8 -> columns % 16 == 0 && Fp8Weight.isGroupedExpert(w, rows, columns);
            case INT8 -> columns % 16 == 0 && QuantizedWeight.isGroupedExpert(w, QuantizedWeight.Format.INT8, 0, rows, columns);
            case INT4_G64, INT4_G128 -> columns % 32 == 0 && QuantizedWeight.isGroupedExpert(w, QuantizedWeight.Format.INT4,
                    format.int4GroupSize, rows, columns);
        };
    }

    private CudaRoutedExperts(CudaContext context, ExpertRouting routing, GroupedKernels.ExpertFormat format,
                              Weight[] gate, Weight[] up, Weight[] down, int capacity) {
        this.context = context;
        this.kernels = context.groupedKernels();
        this.experts = routing.experts();
        this.perToken = routing.perToken();
        this.hidden = gate[0].columns();
        this.width = gate[0].rows();
        this.capacity = capacity;
        this.scoring = routing.scoring() == ExpertRouting.Scoring.SOFTMAX ? 0 : 1;
        this.selection = switch (routing.selection()) {
            case GREEDY -> 0;
            case GROUP_LIMITED_GREEDY -> 1;
            case NOAUX_TC -> 2;
        };
        this.groups = routing.groups();
        this.groupsPerToken = routing.groupsPerToken();
        this.normalize = routing.normalize();
        this.format = format;
        this.scaling = (float) routing.scalingFactor();
        long choices = (long) capacity * perToken;
        long[] sizes = {
                8L * experts, 8L * experts, 8L * experts, 4L * experts, // weight tables, bias
                4 * choices, 4 * choices, 4, 4L * experts, 4L * experts, 4L * experts, // choices, active experts
                4 * choices, 4 * choices, 4 * choices, // pairs
                4 * choices * width, 4 * choices * hidden}; // products
        long[] offsets = new long[sizes.length];
        long total = 0;
        for (int i = 0; i < sizes.length; i++) {
            offsets[i] = total;
            total += (sizes[i] + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
        }
        this.workspace = context.allocate(total);
        gateTable = workspace + offsets[0];
        upTable = workspace + offsets[1];
        downTable = workspace + offsets[2];
        long biasAt = workspace + offsets[3];
        choiceExpert = workspace + offsets[4];
        choiceWeight = workspace + offsets[5];
        activeCount = workspace + offsets[6];
        activeExpert = workspace + offsets[7];
        activeStart = workspace + offsets[8];
        activeSize = workspace + offsets[9];
        pairToken = workspace + offsets[10];
        pairWeight = workspace + offsets[11];
        choicePair = workspace + offsets[12];
        hiddenRows = workspace + offsets[13];
        outRows = workspace + offsets[14];
        try (Arena arena = Arena.ofConfined()) {
            DenseWeight.writeAddressTable(context, gate, gateTable);
            DenseWeight.writeAddressTable(context, up, upTable);
            DenseWeight.writeAddressTable(context, down, downTable);
            float[] correction = routing.correctionBias();
            if (correction != null) {
                context.copyToDeviceNow(biasAt, arena.allocateFrom(ValueLayout.JAVA_FLOAT, correction));
            }
            this.bias = correction != null ? biasAt : 0;
        } catch (RuntimeException e) {
            context.free(workspace);
            throw e;
        }
    }

    @Override
    public int capacity() {
        return capacity;
    }

    @Override
    public void addTo(Tensor normed, Tensor routerLogits, int routedTokens, Tensor residual) {
        if (closed.get()) throw new IllegalStateException("routed experts released");
        CudaTensor x = CudaTensor.f32(normed, context);
        CudaTensor logits = CudaTensor.f32(routerLogits, context);
        CudaTensor acc = CudaTensor.f32(residual, context);
        if (routedTokens < 0 || routedTokens > capacity || routedTokens > x.rowCount()) {
            throw new IllegalArgumentException(routedTokens + " routed tokens for a capacity of " + capacity + " and " + x);
        }
        if (x.rowLength() != hidden || acc.rowLength() != hidden || acc.rowCount() < routedTokens
                || logits.rowLength() != experts || logits.rowCount() < routedTokens) {
            throw new IllegalArgumentException("routed experts of hidden size " + hidden + " over " + experts
                    + " experts given " + x + ", logits " + logits + ", residual " + acc);
        }
        if (routedTokens == 0) return;
        // Padding rows are routed too when they fit: the launches then depend only on the padded row count, which the
        // engine keeps to a few sizes so that decode steps replay as graphs while requests come and go. Padding rows
        // hold one token each; at most perToken experts more are read for all of them.
        int rows = x.rowCount();
        int tokens = rows <= capacity && logits.rowCount() >= rows && acc.rowCount() >= rows
                && Kernels.disjoint(x.pointer(), 4L * rows * hidden, acc.pointer(), 4L * rows * hidden) ? rows : routedTokens;
        if (!Kernels.disjoint(x.pointer(), 4L * tokens * hidden, acc.pointer(), 4L * tokens * hidden)) {
            throw new IllegalArgumentException("the residual overlaps the experts' input");
        }
        int choices = tokens * perToken;
        int maxActive = Math.min(experts, choices);
        kernels.route(logits.pointer(), experts, perToken, tokens, scoring, selection, groups, groupsPerToken,
                normalize, scaling, bias, choiceExpert, choiceWeight);
        kernels.plan(choiceExpert, choiceWeight, choices, perToken, experts, activeCount, activeExpert, activeStart,
                activeSize, pairToken, pairWeight, choicePair);
        kernels.gateUp(format, x.pointer(), hidden, gateTable, upTable, width, maxActive, activeCount, activeExpert, activeStart,
                activeSize, pairToken, hiddenRows);
        kernels.down(format, hiddenRows, width, downTable, hidden, maxActive, activeCount, activeExpert, activeStart, activeSize,
                pairWeight, outRows);
        kernels.combine(outRows, choicePair, perToken, hidden, acc.pointer(), tokens);
    }

    @Override
    public void close() {
        if (closed.compareAndSet(false, true)) context.free(workspace);
    }

    @Override
    public String toString() {
        return "routed experts on the device (" + experts + " " + format.suffix + " experts of " + width + ", " + perToken
                + " per token, up to "
                + capacity + " tokens)";
    }
}
