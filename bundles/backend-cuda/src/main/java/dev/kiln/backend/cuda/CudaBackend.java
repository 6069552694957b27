package dev.kiln.backend.cuda;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.DeviceInfo;
import dev.kiln.api.backend.ExpertRouting;
import dev.kiln.api.backend.PendingTokens;
import dev.kiln.api.backend.RoutedExperts;
import dev.kiln.api.backend.RotaryEmbedding;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cuda.internal.Cleanup;
import dev.kiln.backend.cuda.internal.CudaContext;
import dev.kiln.backend.cuda.internal.CudaRoutedExperts;
import dev.kiln.backend.cuda.internal.CudaTensor;
import dev.kiln.backend.cuda.internal.DenseWeight;
import dev.kiln.backend.cuda.internal.DeviceRotaryEmbedding;
import dev.kiln.backend.cuda.internal.ReleasedWhenCollected;
import dev.kiln.backend.cuda.internal.DeviceRowGather;
import dev.kiln.backend.cuda.internal.GrowingDeviceBuffer;
import dev.kiln.backend.cuda.internal.KernelCompiler;
import dev.kiln.backend.cuda.internal.Kernels;
import dev.kiln.backend.cuda.internal.StepRecorder;
import dev.kiln.backend.cuda.internal.TokenReadbacks;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;

/**
 * The CUDA backend: f32 activations and weights in device memory (bf16 weights stay bf16, copied once from the
 * checkpoint), every operation queued on one stream of one device, no host round trip inside a forward except
 * the small per-step arrays (token ids, positions, block tables), which are staged asynchronously.
 *
 * <p>The component starts disabled; {@code CudaActivation} enables it once a probe found a device, so a machine
 * without CUDA logs one line and keeps serving from the CPU backend. Outside OSGi, {@code new CudaBackend()} opens
 * device 0 ({@link CudaAvailability#probe()} says beforehand whether that can work); call {@link #shutdown()} when
 * done.
 */
@Component(
        service = ComputeBackend.class,
        enabled = false,
        configurationPid = CudaBackend.PID,
        property = {KilnProperties.NAME + "=cuda", KilnProperties.BACKEND + "=cuda"})
@Designate(ocd = CudaBackend.Config.class)
public final class CudaBackend implements ComputeBackend, AutoCloseable {
    /** Config Admin PID of the backend. */
    public static final String PID = "dev.kiln.backend.cuda";

    private static final ValueLayout.OfDouble DOUBLE = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort HALF = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Configuration of the backend. */
    @ObjectClassDefinition(name = "Kiln CUDA backend", description = "NVIDIA GPU through the CUDA driver, cuBLAS and NVRTC")
    public @interface Config {
        /** The CUDA device ordinal. */
        @AttributeDefinition(name = "Device", description = "CUDA device ordinal")
        int device() default 0;

        /** Where compiled kernels are cached; empty for the default folder. */
        @AttributeDefinition(name = "Kernel cache", description = "Folder of compiled kernels; empty = ~/.cache/kiln/cuda-kernels")
        String kernelCache() default "";

        /** Whether repeated launch sequences (decode steps of one batch shape) are replayed as CUDA graphs. */
        @AttributeDefinition(name = "CUDA graphs", description = "Replay repeated decode steps as CUDA graphs (off: launch every kernel from the host)")
        boolean graphs() default true;
    }

    private final CudaContext context;
    /** Rotary tables of the models made here: freed once a model's rotary is collected (the API has no close for it). */
    private final ReleasedWhenCollected<DeviceRotaryEmbedding> rotaries = new ReleasedWhenCollected<>();
    private final java.util.concurrent.atomic.AtomicBoolean shutDown = new java.util.concurrent.atomic.AtomicBoolean();
    /** Every per-head weight table not yet freed (a few hundred bytes per layer): freed when collected or at shutdown. */
    private final List<HeadTable> tables = new ArrayList<>();
    /** Where {@link #argmaxRows} and {@link #sampleRows} leave their results, one int a row. */
    private final GrowingDeviceBuffer choices;
    /** Scratch of {@link #argmaxRows} (the slices' partial results) and {@link #sampleRows} (each row's state). */
    private final GrowingDeviceBuffer choiceScratch;
    /** Where tokens chosen without waiting go: their device buffers and page-locked copies. */
    private final TokenReadbacks readbacks;
    /** A step's token ids with the placeholders for pending tokens replaced, as its embedding reads them. */
    private final GrowingDeviceBuffer resolvedIds;

    /** The backend on device 0 with the default kernel cache. */
    public CudaBackend() {
        this(0, KernelCompiler.defaultCacheDirectory());
    }

    /**
     * The backend on one device.
     *
     * @param device      CUDA device ordinal
     * @param kernelCache folder of compiled kernels, or null to compile every time
     */
    public CudaBackend(int device, Path kernelCache) {
        this(device, kernelCache, true);
    }

    /**
     * The backend on one device.
     *
     * @param device      CUDA device ordinal
     * @param kernelCache folder of compiled kernels, or null to compile every time
     * @param graphs      whether repeated decode steps are replayed as CUDA graphs
     */
    public CudaBackend(int device, Path kernelCache, boolean graphs) {
        this.context = CudaContext.open(device, kernelCache, graphs);
        this.choices = new GrowingDeviceBuffer(context);
        this.choiceScratch = new GrowingDeviceBuffer(context);
        this.readbacks = new TokenReadbacks(context);
        this.resolvedIds = new GrowingDeviceBuffer(context);
    }

    /** Declarative Services constructor. */
    @Activate
    public CudaBackend(Config config) {
        this(config.device(), config.kernelCache().isBlank() ? KernelCompiler.defaultCacheDirectory()
                : Path.of(config.kernelCache()), config.graphs());
    }

    /** The device context (for this bundle's attention kernel). */
    CudaContext context() {
        return context;
    }

    @Override
    public String name() {
        return "cuda";
    }

    @Override
    public DeviceInfo device() {
        CudaContext.DeviceProperties p = context.properties();
        return new DeviceInfo("cuda", p.describe(), p.multiprocessors(), p.memoryBytes());
    }

    @Override
    public Tensor allocate(DType dtype, long... shape) {
        return CudaTensor.allocate(context, dtype, shape);
    }

    @Override
    public void write(float[] source, Tensor destination) {
        CudaTensor d = CudaTensor.f32(destination, context);
        if (source.length > d.size()) throw new IllegalArgumentException(source.length + " values do not fit in " + d);
        context.uploads().write(source, d.pointer());
    }

    @Override
    public float[] read(Tensor source) {
        CudaTensor s = CudaTensor.f32(source, context);
        long n = s.size();
        if (n > Integer.MAX_VALUE - 8) throw new IllegalArgumentException(s + " is too large to read into an array");
        return context.readFloats(s.pointer(), (int) n);
    }

    @Override
    public boolean choosesTokensOnDevice() {
        return true;
    }

    /**
     * Decode steps beyond the GEMV kernels' token counts (8 by default) are padded: to 8 (when the limit is lowered), to
     * multiples of 16 up to 128, then of 64.
     * From there on a product is a few-token tensor-core kernel in token tiles of 8 or one cuBLAS GEMM, whose time
     * hardly grows with the tokens (reading the weight dominates), so padded rows cost little, while every distinct batch size would otherwise record and capture
     * graphs of its own as requests come and go. Up to the GEMV limit each token count has its own kernel, whose time
     * grows with the tokens: no padding there, nor without graphs.
     */
    @Override
    public int decodeBatchSize(int sequences) {
        if (sequences <= Kernels.GEMV_TOKEN_LIMIT || !context.recorder().graphsEnabled()) return sequences;
        if (sequences <= 8) return 8;
        if (sequences <= 128) return (sequences + 15) / 16 * 16;
        return (sequences + 63) / 64 * 64;
    }

    /**
     * Dense bf16 experts route and run on the device (see {@link CudaRoutedExperts}): nothing read back, so the
     * decode steps of a mixture-of-experts model replay as graphs. Quantized experts route on the host.
     */
    @Override
    public RoutedExperts routedExperts(ExpertRouting routing, Weight[] gate, Weight[] up, Weight[] down, int capacity) {
        return CudaRoutedExperts.create(context, routing, gate, up, down, capacity);
    }

    @Override
    public int[] argmaxRows(Tensor x) {
        CudaTensor t = CudaTensor.f32(x, context);
        int rows = t.rowCount();
        if (rows == 0) return new int[0];
        synchronized (this) {
            long out = choices.atLeast(4L * rows);
            argmaxInto(t, rows, out);
            return context.readInts(out, rows);
        }
    }

    /**
     * True: the choices are queued and copied back without waiting, into buffers of their own, and {@link
     * #embed(Weight, int[], PendingTokens, Tensor)} reads them on the device, so an engine queues its next step
     * while this one runs.
     */
    @Override
    public boolean overlapsSteps() {
        return true;
    }

    @Override
    public PendingTokens argmaxRowsPending(Tensor x) {
        CudaTensor t = CudaTensor.f32(x, context);
        int rows = t.rowCount();
        synchronized (this) {
            long out = readbacks.claim(rows);
            if (rows > 0) argmaxInto(t, rows, out);
            return readbacks.send(rows, t.rowLength());
        }
    }

    private void argmaxInto(CudaTensor t, int rows, long out) {
        long partials = choiceScratch.atLeast(4L * 2 * rows * Kernels.ARGMAX_SLICES);
        context.kernels().argmaxRows(t.pointer(), t.rowLength(), out, rows, partials);
    }

    @Override
    public int[] sampleRows(Tensor x, float[] params, double[] uniforms) {
        CudaTensor t = CudaTensor.f32(x, context);
        int rows = t.rowCount();
        float[] draws = draws(rows, params, uniforms);
        if (rows == 0) return new int[0];
        synchronized (this) {
            long out = choices.atLeast(4L * rows);
            sampleInto(t, rows, params, draws, out);
            return context.readInts(out, rows);
        }
    }

    @Override
    public PendingTokens sampleRowsPending(Tensor x, float[] params, double[] uniforms) {
        CudaTensor t = CudaTensor.f32(x, context);
        int rows = t.rowCount();
        float[] draws = draws(rows, params, uniforms);
        synchronized (this) {
            long out = readbacks.claim(rows);
            if (rows > 0) sampleInto(t, rows, params, draws, out);
            return readbacks.send(rows, t.rowLength());
        }
    }

    /** The uniform numbers in single precision, after checking the arguments cover the rows. */
    private static float[] draws(int rows, float[] params, double[] uniforms) {
        if (params.length < 4 * rows || uniforms.length < rows) {
            throw new IllegalArgumentException("sampling parameters for " + params.length / 4 + " and " + uniforms.length
                    + " rows, the tensor has " + rows);
        }
        float[] draws = new float[rows];
        for (int r = 0; r < rows; r++) {
            double u = uniforms[r];
            if (!(u >= 0 && u < 1)) throw new IllegalArgumentException("uniform number " + u + " outside [0, 1)");
            draws[r] = Math.min((float) u, LARGEST_BELOW_ONE); // single precision: 2^-24 steps of the cumulative weight
        }
        return draws;
    }

    private void sampleInto(CudaTensor t, int rows, float[] params, float[] draws, long out) {
        boolean anyTopK = false, anyTopP = false;
        for (int r = 0; r < rows; r++) {
            anyTopK |= (int) params[4 * r + 1] > 0;
            anyTopP |= params[4 * r + 2] < 1f;
        }
        long deviceParams = context.uploads().floats(Arrays.copyOf(params, 4 * rows));
        long deviceDraws = context.uploads().floats(draws);
        long scratch = choiceScratch.atLeast(rows * Kernels.SAMPLE_ROW_BYTES);
        context.kernels().sampleRows(t.pointer(), t.rowLength(), deviceParams, deviceDraws, scratch, out, rows,
                anyTopK, anyTopP);
    }

    private static final float LARGEST_BELOW_ONE = Math.nextDown(1f);

    @Override
    public Weight denseWeight(CheckpointTensor tensor) {
        return DenseWeight.of(context, tensor);
    }

    @Override
    public Tensor vector(CheckpointTensor tensor) {
        long n = tensor.size();
        if (n > Integer.MAX_VALUE - 8) throw new IllegalArgumentException(tensor.name() + " is too large for a vector");
        float[] values = new float[(int) n];
        MemorySegment data = tensor.data();
        switch (tensor.dtype()) {
            case F32 -> { for (int i = 0; i < n; i++) values[i] = data.get(FLOAT, 4L * i); }
            case BF16 -> { for (int i = 0; i < n; i++) values[i] = Float.intBitsToFloat((data.get(HALF, 2L * i) & 0xffff) << 16); }
            case F16 -> { for (int i = 0; i < n; i++) values[i] = Float.float16ToFloat(data.get(HALF, 2L * i)); }
            case F64 -> { for (int i = 0; i < n; i++) values[i] = (float) data.get(DOUBLE, 8L * i); }
            default -> throw new IllegalArgumentException(tensor.name() + ": cannot make a float vector of " + tensor.dtype());
        }
        CudaTensor out = CudaTensor.allocate(context, DType.F32, 1, n);
        context.uploads().write(values, out.pointer());
        return out;
    }

    @Override
    public void embed(Weight table, int[] ids, Tensor out) {
        table.gatherRows(ids, out);
    }

    /**
     * Placeholders for tokens this backend is still choosing are replaced on the device, after the kernels that
     * choose them, by one small kernel ahead of the lookup: nothing waits. Pending tokens already read, or of another
     * kind, are resolved on the host.
     */
    @Override
    public void embed(Weight table, int[] ids, PendingTokens pending, Tensor out) {
        boolean placeholders = false;
        for (int id : ids) placeholders |= id < 0;
        if (placeholders && pending instanceof TokenReadbacks.Pending chosen && chosen.isFrom(readbacks)
                && !chosen.isRead() && table instanceof DeviceRowGather gather) {
            if (chosen.columns() > table.rows()) {
                throw new IllegalArgumentException("tokens chosen from rows of " + chosen.columns()
                        + " columns cannot index a table of " + table.rows() + " rows");
            }
            for (int id : ids) {
                if (id >= table.rows() || (id < 0 && PendingTokens.rowOf(id) >= chosen.count())) {
                    throw new IllegalArgumentException("token id " + id + " is neither a row of the table's " + table.rows()
                            + " nor a placeholder for one of " + chosen.count() + " pending tokens");
                }
            }
            synchronized (this) {
                long uploaded = context.uploads().ints(ids);
                long resolved = resolvedIds.atLeast(4L * ids.length);
                context.kernels().resolveTokens(uploaded, chosen.devicePointer(), resolved, ids.length);
                gather.gatherRows(resolved, ids.length, out);
            }
            return;
        }
        embed(table, placeholders ? PendingTokens.resolve(ids, pending) : ids, out);
    }

    @Override
    public void addBias(Tensor x, Tensor bias) {
        CudaTensor t = CudaTensor.f32(x, context);
        CudaTensor b = CudaTensor.f32(bias, context);
        int n = t.rowLength();
        if (b.size() != n) throw new IllegalArgumentException("bias of " + b.size() + " for rows of " + n);
        context.kernels().addBias(t.pointer(), b.pointer(), t.size(), n);
    }

    @Override
    public void rmsNorm(Tensor x, Tensor scale, float eps, Tensor out) {
        CudaTensor in = CudaTensor.f32(x, context);
        CudaTensor s = CudaTensor.f32(scale, context);
        CudaTensor o = CudaTensor.f32(out, context);
        int n = in.rowLength();
        if (s.size() != n) throw new IllegalArgumentException("scale of " + s.size() + " for rows of " + n);
        requireRows(o, in.rowCount(), n);
        context.kernels().rmsNorm(in.pointer(), s.pointer(), eps, o.pointer(), in.rowCount(), n);
    }

    @Override
    public void add(Tensor accumulator, Tensor x) {
        CudaTensor acc = CudaTensor.f32(accumulator, context);
        CudaTensor in = CudaTensor.f32(x, context);
        requireRows(in, acc.rowCount(), acc.rowLength());
        context.kernels().add(acc.pointer(), in.pointer(), acc.size());
    }

    @Override
    public void siluAndMul(Tensor gate, Tensor up, Tensor out) {
        CudaTensor g = CudaTensor.f32(gate, context);
        CudaTensor u = CudaTensor.f32(up, context);
        CudaTensor o = CudaTensor.f32(out, context);
        requireRows(u, g.rowCount(), g.rowLength());
        requireRows(o, g.rowCount(), g.rowLength());
        context.kernels().siluMul(g.pointer(), u.pointer(), o.pointer(), g.size());
    }

    @Override
    public void copyColumns(Tensor src, int srcOffset, Tensor dst, int dstOffset, int width) {
        CudaTensor s = CudaTensor.f32(src, context);
        CudaTensor d = CudaTensor.f32(dst, context);
        int rows = s.rowCount();
        ComputeBackend.requireColumnRanges(src, srcOffset, 0, dst, dstOffset, 0, width, 1); // long sums: no overflow
        context.kernels().copyColumns(s.pointer(), s.rowLength(), srcOffset, d.pointer(), d.rowLength(), dstOffset, width, rows);
    }

    @Override
    public void copyColumns(Tensor src, int srcOffset, int srcStride, Tensor dst, int dstOffset, int dstStride, int width,
                            int count) {
        CudaTensor s = CudaTensor.f32(src, context);
        CudaTensor d = CudaTensor.f32(dst, context);
        ComputeBackend.requireColumnRanges(s, srcOffset, srcStride, d, dstOffset, dstStride, width, count);
        context.kernels().copyColumns(s.pointer(), s.rowLength(), srcOffset, srcStride, d.pointer(), d.rowLength(),
                dstOffset, dstStride, width, count, s.rowCount());
    }

    /**
     * One launch over all heads when the weights are dense bf16 of one shape (MLA's absorption matrices of a bf16
     * checkpoint) or dense f32 (those derived from FP8 blocks, unrounded) and every head's slice starts 16 bytes
     * aligned; otherwise head by head.
     */
    @Override
    public void matmulPerHead(Tensor x, int inOffset, int inStride, Weight[] weights, Tensor out, int outOffset,
                              int outStride, Tensor inScratch, Tensor outScratch) {
        CudaTensor in = CudaTensor.f32(x, context);
        CudaTensor o = CudaTensor.f32(out, context);
        int heads = weights.length;
        if (heads == 0) return;
        int rows = weights[0].rows(), columns = weights[0].columns();
        boolean f32 = DenseWeight.isF32(weights[0], rows, columns);
        boolean grouped = heads <= 65_535 && columns % 8 == 0 && in.rowLength() % 4 == 0 && inOffset % 4 == 0
                && inStride % 4 == 0;
        for (Weight w : weights) {
            grouped &= f32 ? DenseWeight.isF32(w, rows, columns) : DenseWeight.isBf16(w, rows, columns);
        }
        if (!grouped) {
            ComputeBackend.super.matmulPerHead(x, inOffset, inStride, weights, out, outOffset, outStride, inScratch, outScratch);
            return;
        }
        int tokens = in.rowCount();
        if (inOffset < 0 || inStride < 0 || inOffset + (long) (heads - 1) * inStride + columns > in.rowLength()
                || outOffset < 0 || (heads > 1 && outStride < rows) || outOffset + (long) (heads - 1) * outStride + rows > o.rowLength()
                || o.rowCount() < tokens) {
            throw new IllegalArgumentException(heads + " heads of [" + rows + ", " + columns + "] from " + in + " at "
                    + inOffset + " every " + inStride + " into " + o + " at " + outOffset + " every " + outStride
                    + " are out of bounds or overlap");
        }
        if (tokens == 0) return;
        context.groupedKernels().gemvPerHead(f32, headTable(weights), heads, in.pointer(), in.rowLength(), inOffset, inStride,
                o.pointer(), o.rowLength(), outOffset, outStride, rows, columns, tokens);
    }

    /** Device tables of the per-head weights' addresses, one per array the model passes (it passes the same each time). */
    private final java.util.Map<Weight[], Long> headTables = new java.util.WeakHashMap<>();
    /** Arrays collected with their model: their tables are freed at the next table or at shutdown. */
    private final java.lang.ref.ReferenceQueue<Weight[]> collectedHeads = new java.lang.ref.ReferenceQueue<>();

    /** A table's address, queued when the weight array it serves is collected. */
    private static final class HeadTable extends java.lang.ref.WeakReference<Weight[]> {
        final long pointer;

        HeadTable(Weight[] weights, long pointer, java.lang.ref.ReferenceQueue<Weight[]> queue) {
            super(weights, queue);
            this.pointer = pointer;
        }
    }

    private synchronized long headTable(Weight[] weights) {
        Long table = headTables.get(weights);
        if (table != null) return table;
        for (java.lang.ref.Reference<? extends Weight[]> r; (r = collectedHeads.poll()) != null; ) {
            HeadTable stale = (HeadTable) r;
            tables.remove(stale);
            context.free(stale.pointer);
        }
        long pointer = context.allocate(8L * weights.length);
        DenseWeight.writeAddressTable(context, weights, pointer);
        headTables.put(weights, pointer);
        tables.add(new HeadTable(weights, pointer, collectedHeads));
        return pointer;
    }

    @Override
    public void gatherRows(Tensor src, int[] rows, Tensor dst) {
        CudaTensor s = CudaTensor.f32(src, context);
        CudaTensor d = CudaTensor.f32(dst, context);
        int n = s.rowLength();
        if (d.rowLength() != n || d.rowCount() < rows.length) {
            throw new IllegalArgumentException("gathering " + rows.length + " rows of " + n + " into " + d);
        }
        for (int r : rows) {
            if (r < 0 || r >= s.rowCount()) throw new IllegalArgumentException("row " + r + " outside " + s);
        }
        if (rows.length == 0) return;
        context.kernels().gatherRows(s.pointer(), context.uploads().ints(rows), d.pointer(), rows.length, n);
    }

    @Override
    public void scatterAddRows(Tensor src, int[] rows, float[] scales, Tensor dst) {
        CudaTensor s = CudaTensor.f32(src, context);
        CudaTensor d = CudaTensor.f32(dst, context);
        int n = s.rowLength();
        if (d.rowLength() != n || s.rowCount() < rows.length || scales.length != rows.length) {
            throw new IllegalArgumentException("scattering " + rows.length + " rows of " + n + " into " + d);
        }
        for (int r : rows) {
            if (r < 0 || r >= d.rowCount()) throw new IllegalArgumentException("row " + r + " outside " + d);
        }
        if (rows.length == 0) return;
        long deviceRows = context.uploads().ints(rows);
        long deviceScales = context.uploads().floats(scales);
        context.kernels().scatterAddRows(s.pointer(), deviceRows, deviceScales, d.pointer(), n, rows.length);
    }

    @Override
    public void scale(Tensor x, float factor) {
        CudaTensor t = CudaTensor.f32(x, context);
        context.kernels().scale(t.pointer(), factor, t.size());
    }

    @Override
    public RotaryEmbedding rotaryEmbedding(float[] inverseFrequencies, float magnitude, RotaryEmbedding.Layout layout) {
        rotaries.expunge(); // the tables of models gone (a draft model reloaded, a model swapped)
        DeviceRotaryEmbedding rotary = new DeviceRotaryEmbedding(context, inverseFrequencies, magnitude, layout);
        rotaries.track(rotary, rotary.tablesRelease());
        return rotary;
    }

    /** How launches were issued so far: chunks replayed as CUDA graphs, captured, launched one by one, fused. */
    public StepRecorder.Stats launchStats() {
        return context.launchStats();
    }

    /** Waits until every queued operation has run; reports errors of asynchronous work. */
    public void synchronize() {
        context.synchronize();
    }

    /** Releases the device: rotary tables, kernels, stream and context. Tensors and weights made are invalid after. */
    @Deactivate
    @Override
    public void shutdown() {
        if (!shutDown.compareAndSet(false, true)) return; // deactivation and close() may both come
        // Each release on its own: after a device fault the frees throw, and the context must go all the same (a
        // context left retained would keep every allocation and fail the next activation on this device).
        Cleanup.all(rotaries::close, () -> {
            synchronized (this) {
                try {
                    Cleanup.all(choices::close, choiceScratch::close, readbacks::close, resolvedIds::close,
                            () -> Cleanup.all(tables.stream().map(t -> (Runnable) () -> context.free(t.pointer)).toArray(Runnable[]::new)));
                } finally {
                    tables.clear();
                    headTables.clear();
                }
            }
        }, context::close);
    }

    /** Same as {@link #shutdown()}, for try-with-resources. */
    @Override
    public void close() {
        shutdown();
    }

    private static void requireRows(CudaTensor t, int rows, int rowLength) {
        if (t.rowCount() < rows || t.rowLength() != rowLength) {
            throw new IllegalArgumentException(t + " cannot hold " + rows + " rows of " + rowLength);
        }
    }
}
