package dev.kiln.backend.cpu;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.DeviceInfo;
import dev.kiln.api.backend.RotaryEmbedding;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cpu.internal.Conversions;
import dev.kiln.backend.cpu.internal.CpuRotaryEmbedding;
import dev.kiln.backend.cpu.internal.CpuTopology;
import dev.kiln.backend.cpu.internal.DenseWeight;
import dev.kiln.backend.cpu.internal.RowKernels;
import dev.kiln.backend.cpu.internal.Scratch;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;

/**
 * The CPU backend: f32 activations on the Java heap, weights memory-mapped in their checkpoint format, kernels
 * written with the Vector API and spread over a {@link WorkerPool} of one thread per physical core.
 *
 * <p>Outside OSGi, {@code new CpuBackend(threads)} gives a ready backend; call {@link #shutdown()} when done.
 */
@Component(
        service = ComputeBackend.class,
        configurationPid = CpuBackend.PID,
        property = {KilnProperties.NAME + "=cpu", KilnProperties.BACKEND + "=cpu"})
@Designate(ocd = CpuBackend.Config.class)
public final class CpuBackend implements ComputeBackend, AutoCloseable {
    /** Config Admin PID of the backend. */
    public static final String PID = "dev.kiln.backend.cpu";

    /** Rows × elements below which a row-wise operation stays on the calling thread (dispatch would cost more). */
    private static final int PARALLEL_ELEMENTS = 1 << 16;
    private static final ValueLayout.OfDouble DOUBLE = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Configuration of the backend. */
    @ObjectClassDefinition(name = "Kiln CPU backend", description = "Vector API kernels on a pool of worker threads")
    public @interface Config {
        /** Worker threads including the caller; 0 means one per physical core. */
        @AttributeDefinition(name = "Threads", description = "Threads per operation, the calling thread included; 0 = one per physical core")
        int threads() default 0;
    }

    private final WorkerPool pool;
    private final Scratch scratch;

    /** A backend with one thread per physical core. */
    public CpuBackend() {
        this(0);
    }

    /**
     * A backend with the given number of threads (the calling thread included).
     *
     * @param threads threads per operation, or 0 for one per physical core
     */
    public CpuBackend(int threads) {
        if (threads < 0) throw new IllegalArgumentException("threads must be >= 0, got " + threads);
        int n = threads == 0 ? CpuTopology.physicalCores() : threads;
        this.pool = new WorkerPool(n);
        this.scratch = new Scratch(n);
    }

    /** Declarative Services constructor: the thread count comes from the configuration. */
    @Activate
    public CpuBackend(Config config) {
        this(config.threads());
    }

    /** The threads every operation of this backend runs on; kernels in other bundles share them. */
    public WorkerPool pool() {
        return pool;
    }

    @Override
    public String name() {
        return "cpu";
    }

    @Override
    public DeviceInfo device() {
        int bits = CpuTopology.vectorBits();
        String description = CpuTopology.modelName() + ", " + pool.threads() + " threads, "
                + (bits >= 512 ? "AVX-512" : bits >= 256 ? "AVX2" : "SIMD") + " (" + bits + "-bit vectors)";
        return new DeviceInfo("cpu", description, pool.threads(), CpuTopology.memoryBytes());
    }

    @Override
    public Tensor allocate(DType dtype, long... shape) {
        return CpuTensor.allocate(dtype, shape);
    }

    @Override
    public void write(float[] source, Tensor destination) {
        CpuTensor d = CpuTensor.f32(destination);
        if (source.length > d.size()) {
            throw new IllegalArgumentException(source.length + " values do not fit in " + d);
        }
        System.arraycopy(source, 0, d.array(), d.offset(), source.length);
    }

    @Override
    public float[] read(Tensor source) {
        CpuTensor s = CpuTensor.f32(source);
        return Arrays.copyOfRange(s.array(), s.offset(), s.offset() + (int) s.size());
    }

    @Override
    public Weight denseWeight(CheckpointTensor tensor) {
        return DenseWeight.of(tensor, pool, scratch);
    }

    @Override
    public Tensor vector(CheckpointTensor tensor) {
        long n = tensor.size();
        if (n > Integer.MAX_VALUE - 8) throw new IllegalArgumentException(tensor.name() + " is too large for a vector");
        CpuTensor out = CpuTensor.allocate(DType.F32, 1, n);
        float[] dst = out.array();
        MemorySegment data = tensor.data();
        switch (tensor.dtype()) {
            case F32 -> Conversions.f32ToFloat(data, 0, dst, 0, (int) n);
            case BF16 -> Conversions.bf16ToFloat(data, 0, dst, 0, (int) n);
            case F16 -> Conversions.f16ToFloat(data, 0, dst, 0, (int) n);
            case F64 -> {
                for (int i = 0; i < n; i++) dst[i] = (float) data.get(DOUBLE, 8L * i);
            }
            default -> throw new IllegalArgumentException(tensor.name() + ": cannot make a float vector of " + tensor.dtype());
        }
        return out;
    }

    @Override
    public void embed(Weight table, int[] ids, Tensor out) {
        table.gatherRows(ids, out);
    }

    @Override
    public void addBias(Tensor x, Tensor bias) {
        CpuTensor t = CpuTensor.f32(x);
        CpuTensor b = CpuTensor.f32(bias);
        int n = t.rowLength();
        if (b.size() != n) throw new IllegalArgumentException("bias of " + b.size() + " for rows of " + n);
        float[] xa = t.array();
        float[] ba = b.array();
        int bo = b.offset();
        forRows(t.rowCount(), n, (from, to) -> {
            for (int r = from; r < to; r++) RowKernels.add(xa, t.rowOffset(r), ba, bo, n);
        });
    }

    @Override
    public void rmsNorm(Tensor x, Tensor scale, float eps, Tensor out) {
        CpuTensor in = CpuTensor.f32(x);
        CpuTensor s = CpuTensor.f32(scale);
        CpuTensor o = CpuTensor.f32(out);
        int n = in.rowLength();
        if (s.size() != n) throw new IllegalArgumentException("scale of " + s.size() + " for rows of " + n);
        requireRows(o, in.rowCount(), n);
        float[] xa = in.array(), sa = s.array(), oa = o.array();
        int so = s.offset();
        forRows(in.rowCount(), n, (from, to) -> {
            for (int r = from; r < to; r++) RowKernels.rmsNorm(xa, in.rowOffset(r), sa, so, eps, oa, o.rowOffset(r), n);
        });
    }

    @Override
    public void add(Tensor accumulator, Tensor x) {
        CpuTensor acc = CpuTensor.f32(accumulator);
        CpuTensor in = CpuTensor.f32(x);
        int n = acc.rowLength();
        requireRows(in, acc.rowCount(), n);
        float[] aa = acc.array(), xa = in.array();
        forRows(acc.rowCount(), n, (from, to) -> {
            for (int r = from; r < to; r++) RowKernels.add(aa, acc.rowOffset(r), xa, in.rowOffset(r), n);
        });
    }

    @Override
    public void copyColumns(Tensor src, int srcOffset, Tensor dst, int dstOffset, int width) {
        CpuTensor s = CpuTensor.f32(src);
        CpuTensor d = CpuTensor.f32(dst);
        int rows = s.rowCount();
        ComputeBackend.requireColumnRanges(src, srcOffset, 0, dst, dstOffset, 0, width, 1); // long sums: no overflow
        float[] sa = s.array(), da = d.array();
        for (int r = 0; r < rows; r++) System.arraycopy(sa, s.rowOffset(r) + srcOffset, da, d.rowOffset(r) + dstOffset, width);
    }

    @Override
    public void gatherRows(Tensor src, int[] rows, Tensor dst) {
        CpuTensor s = CpuTensor.f32(src);
        CpuTensor d = CpuTensor.f32(dst);
        int n = s.rowLength();
        if (d.rowLength() != n || d.rowCount() < rows.length) {
            throw new IllegalArgumentException("gathering " + rows.length + " rows of " + n + " into " + d);
        }
        float[] sa = s.array(), da = d.array();
        for (int i = 0; i < rows.length; i++) {
            if (rows[i] < 0 || rows[i] >= s.rowCount()) throw new IllegalArgumentException("row " + rows[i] + " outside " + s);
            System.arraycopy(sa, s.rowOffset(rows[i]), da, d.rowOffset(i), n);
        }
    }

    @Override
    public void scatterAddRows(Tensor src, int[] rows, float[] scales, Tensor dst) {
        CpuTensor s = CpuTensor.f32(src);
        CpuTensor d = CpuTensor.f32(dst);
        int n = s.rowLength();
        if (d.rowLength() != n || s.rowCount() < rows.length || scales.length != rows.length) {
            throw new IllegalArgumentException("scattering " + rows.length + " rows of " + n + " into " + d);
        }
        float[] sa = s.array(), da = d.array();
        // Sequential: rows may repeat, and a row's accumulation order then stays the order given.
        for (int i = 0; i < rows.length; i++) {
            if (rows[i] < 0 || rows[i] >= d.rowCount()) throw new IllegalArgumentException("row " + rows[i] + " outside " + d);
            RowKernels.addScaled(da, d.rowOffset(rows[i]), sa, s.rowOffset(i), scales[i], n);
        }
    }

    @Override
    public void scale(Tensor x, float factor) {
        CpuTensor t = CpuTensor.f32(x);
        int n = t.rowLength();
        float[] a = t.array();
        forRows(t.rowCount(), n, (from, to) -> {
            for (int r = from; r < to; r++) RowKernels.scale(a, t.rowOffset(r), factor, n);
        });
    }

    @Override
    public void siluAndMul(Tensor gate, Tensor up, Tensor out) {
        CpuTensor g = CpuTensor.f32(gate);
        CpuTensor u = CpuTensor.f32(up);
        CpuTensor o = CpuTensor.f32(out);
        int n = g.rowLength();
        requireRows(u, g.rowCount(), n);
        requireRows(o, g.rowCount(), n);
        float[] ga = g.array(), ua = u.array(), oa = o.array();
        forRows(g.rowCount(), n, (from, to) -> {
            for (int r = from; r < to; r++) {
                RowKernels.siluAndMul(ga, g.rowOffset(r), ua, u.rowOffset(r), oa, o.rowOffset(r), n);
            }
        });
    }

    @Override
    public RotaryEmbedding rotaryEmbedding(float[] inverseFrequencies, float magnitude, RotaryEmbedding.Layout layout) {
        return new CpuRotaryEmbedding(inverseFrequencies, magnitude, layout, pool);
    }

    /** Stops the worker threads. */
    @Deactivate
    @Override
    public void shutdown() {
        pool.close();
    }

    /** Same as {@link #shutdown()}, for try-with-resources. */
    @Override
    public void close() {
        shutdown();
    }

    private static void requireRows(CpuTensor t, int rows, int rowLength) {
        if (t.rowCount() < rows || t.rowLength() != rowLength) {
            throw new IllegalArgumentException(t + " cannot hold " + rows + " rows of " + rowLength);
        }
    }

    /** A loop body over rows {@code from..to-1}. */
    private interface Rows {
        void run(int from, int to);
    }

    private void forRows(int rows, int rowLength, Rows body) {
        if ((long) rows * rowLength < PARALLEL_ELEMENTS || rows == 1) {
            body.run(0, rows);
        } else {
            pool.parallelFor(rows, (worker, from, to) -> body.run(from, to));
        }
    }
}
