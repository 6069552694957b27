package dev.kiln.backend.cuda.internal;

import dev.kiln.backend.cuda.bindings.Cublas;
import dev.kiln.backend.cuda.bindings.CudaDriver;
import dev.kiln.backend.cuda.bindings.CudaException;
import dev.kiln.backend.cuda.bindings.Nvrtc;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.ref.WeakReference;
import java.nio.file.Path;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One device as the backend uses it: the driver's primary context, one non-blocking stream that every operation
 * is ordered on, a cuBLAS handle bound to that stream, the loaded kernels and the staging area for host-to-device
 * uploads.
 *
 * <p>The driver's current context is per thread: every entry point calls {@link #bind()}, which costs one
 * thread-local read after the first call on a thread.
 */
public final class CudaContext implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(CudaContext.class);
    private final CudaDriver driver;
    private final Cublas cublas;
    private final int ordinal;
    private final int device;
    private final MemorySegment context;
    private final MemorySegment stream;
    private final MemorySegment cublasHandle;
    private final DeviceProperties properties;
    /**
     * The context each thread last made current. One per thread, not per context: a thread that uses two devices'
     * contexts in turn must switch each time, which a per-context "already bound" flag would skip after the first.
     */
    private static final ThreadLocal<WeakReference<CudaContext>> CURRENT = new ThreadLocal<>();
    private final Kernels kernels;
    private final Uploads uploads;
    private final MatmulScratch matmulScratch;
    private final StepRecorder recorder;
    private final KernelCompiler compiler;
    private final String architecture;
    private QuantKernels quantKernels;
    private GroupedKernels groupedKernels;
    private volatile boolean closed;

    /** What the backend reports about its device. */
    public record DeviceProperties(String name, int computeMajor, int computeMinor, int multiprocessors,
                                   long memoryBytes, int driverVersion) {
        /** E.g. "NVIDIA H100 80GB HBM3, compute capability 9.0, 132 SMs, CUDA driver 13.0". */
        public String describe() {
            return name + ", compute capability " + computeMajor + "." + computeMinor + ", " + multiprocessors
                    + " SMs, CUDA driver " + driverVersion / 1000 + "." + driverVersion % 1000 / 10;
        }
    }

    /**
     * Whether the project's kernels are launched as programmatic dependent launches on Hopper and later (system
     * property {@code kiln.cuda.programmaticLaunch}, default true): each kernel's start overlaps the end of the one
     * before, which a decode step of some 300 short kernels feels.
     */
    static final boolean PROGRAMMATIC_LAUNCHES =
            Boolean.parseBoolean(System.getProperty("kiln.cuda.programmaticLaunch", "true"));

    /**
     * Whether kernels may run in thread block clusters on Hopper and later (system property {@code kiln.cuda.clusters},
     * default true): the split attention of small decode batches then merges its splits inside a cluster instead of
     * in a kernel of its own ({@link SplitAttentionPlan}).
     */
    static final boolean CLUSTERS = Boolean.parseBoolean(System.getProperty("kiln.cuda.clusters", "true"));

    private CudaContext(CudaDriver driver, Cublas cublas, Nvrtc nvrtc, int ordinal, Path kernelCache, boolean graphs) {
        this.driver = driver;
        this.cublas = cublas;
        this.ordinal = ordinal;
        driver.init();
        int count = driver.deviceCount();
        if (ordinal < 0 || ordinal >= count) {
            throw new IllegalArgumentException("CUDA device " + ordinal + " requested, " + count + " present");
        }
        this.device = driver.device(ordinal);
        this.properties = new DeviceProperties(driver.deviceName(device),
                driver.attribute(device, CudaDriver.ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                driver.attribute(device, CudaDriver.ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
                driver.attribute(device, CudaDriver.ATTRIBUTE_MULTIPROCESSOR_COUNT),
                driver.totalMemory(device), driver.driverVersion());
        this.context = driver.retainPrimaryContext(device);
        try {
            bind();
            this.stream = driver.createStream(CudaDriver.STREAM_NON_BLOCKING);
            this.recorder = new StepRecorder(driver, stream, graphs,
                    PROGRAMMATIC_LAUNCHES && properties.computeMajor() >= 9, CLUSTERS && properties.computeMajor() >= 9);
            this.cublasHandle = cublas.create();
            cublas.setStream(cublasHandle, stream);
            this.architecture = KernelCompiler.architecture(properties.computeMajor(), properties.computeMinor());
            this.compiler = new KernelCompiler(nvrtc, kernelCache);
            this.kernels = loadKernels(KernelCompiler.SOURCE, modules -> new Kernels(this, modules));
            this.uploads = new Uploads(this);
            this.matmulScratch = new MatmulScratch(this);
        } catch (RuntimeException e) {
            // What was created in the context goes with it once the last retain is released.
            driver.releasePrimaryContext(device);
            throw e;
        }
    }

    /**
     * Opens a device: loads the driver, cuBLAS and NVRTC, compiles (or loads from the cache) the kernels.
     *
     * @param kernelCache where compiled kernels are kept, or null for none
     */
    public static CudaContext open(int ordinal, Path kernelCache) {
        return open(ordinal, kernelCache, true);
    }

    /**
     * Opens a device, choosing whether repeated launch sequences (decode steps) are replayed as CUDA graphs.
     *
     * @param kernelCache where compiled kernels are kept, or null for none
     */
    public static CudaContext open(int ordinal, Path kernelCache, boolean graphs) {
        return new CudaContext(CudaDriver.load(), Cublas.load(), Nvrtc.load(), ordinal, kernelCache, graphs);
    }

    /** Makes this context current on the calling thread, where another context (or none) was. */
    public void bind() {
        if (closed) throw new IllegalStateException("the CUDA backend is shut down");
        WeakReference<CudaContext> current = CURRENT.get();
        if (current == null || current.get() != this) {
            driver.setCurrentContext(context);
            CURRENT.set(new WeakReference<>(this));
        }
    }

    public CudaDriver driver() {
        return driver;
    }

    public Cublas cublas() {
        return cublas;
    }

    /**
     * Runs {@code action} on the stream after issuing the held launches it must follow, holding the recorder's lock
     * throughout: another thread's flush, and with it a graph capture of that thread's step, cannot run meanwhile.
     * Work queued on the stream outside that lock (a memset of a draft model's KV cache loading in the background, a
     * wait for the stream) could land inside the engine thread's capture: captured into a graph that every later step
     * replays, or invalidating the capture. Every direct use of the stream goes through here.
     */
    public void onStream(Consumer<MemorySegment> action) {
        bind();
        synchronized (recorder) {
            recorder.flush();
            action.accept(stream);
        }
    }

    /**
     * {@code C = op(A) · op(B)} (+ C when accumulating) with cuBLAS, f32 output and accumulation, in stream order: held
     * by the recorder like a kernel launch, so a decode step's GEMMs join its CUDA graph.
     */
    public void gemm(int transA, int transB, int m, int n, int k, long a, int aType, int lda, long b, int bType, int ldb,
                     boolean accumulate, long c, int ldc) {
        bind();
        long[] parameters = {transA, transB, m, n, k, a, aType, lda, b, bType, ldb, accumulate ? 1 : 0, c, ldc};
        recorder.call("cublasGemmEx", parameters, () -> cublas.gemm(cublasHandle, transA, transB, m, n, k, a, aType, lda,
                b, bType, ldb, accumulate, c, ldc));
    }

    /** Where kernel launches and staged uploads are held until issued (see {@link StepRecorder}). */
    public StepRecorder recorder() {
        return recorder;
    }

    public Kernels kernels() {
        return kernels;
    }

    public Uploads uploads() {
        return uploads;
    }

    MatmulScratch matmulScratch() {
        return matmulScratch;
    }

    /**
     * The kernels of the weight-only integer formats, compiled (or read from the cache) and loaded at the first call:
     * a model without a quantized weight never pays for them.
     */
    public synchronized QuantKernels quantKernels() {
        bind();
        if (quantKernels == null) {
            quantKernels = loadKernels(QuantKernels.SOURCE, modules -> new QuantKernels(this, modules));
        }
        return quantKernels;
    }

    /**
     * The kernels of routed experts, compiled (or read from the cache) and loaded at the first call: a dense model
     * never pays for them.
     */
    public synchronized GroupedKernels groupedKernels() {
        bind();
        if (groupedKernels == null) {
            groupedKernels = loadKernels(GroupedKernels.SOURCE, modules -> new GroupedKernels(this, modules));
        }
        return groupedKernels;
    }

    /**
     * A kernel source's units compiled (or read from the cache) and loaded, and the Java side built over them; the
     * modules are unloaded again when building fails (a kernel it names is missing).
     */
    private <T> T loadKernels(String source, java.util.function.Function<KernelModules, T> build) {
        KernelModules modules;
        try {
            modules = KernelModules.load(driver, source, compiler.units(source, architecture));
        } catch (CudaException e) {
            // A cached CUBIN can be an ELF file that this driver still refuses; compiled afresh it replaces the cache's.
            LOG.warn("CUDA kernels {} did not load ({}); compiling them again", source, e.getMessage());
            modules = KernelModules.load(driver, source, compiler.unitsCompiledAgain(source, architecture));
        }
        try {
            return build.apply(modules);
        } catch (RuntimeException e) {
            modules.close();
            throw e;
        }
    }

    /** The device's name and capabilities. */
    public DeviceProperties properties() {
        return properties;
    }

    /** The device ordinal. */
    public int ordinal() {
        return ordinal;
    }

    /** Allocates device memory; at least one byte so that empty tensors still have an address. */
    public long allocate(long bytes) {
        bind();
        return driver.allocate(Math.max(bytes, 1));
    }

    /** Frees device memory once the work queued before has finished with it. */
    public void free(long pointer) {
        if (closed) return; // the context's memory went with it
        onStream(s -> {
            driver.synchronize(s);
            driver.free(pointer);
            recorder.forgetGraphs();
        });
    }

    /** Waits for every queued operation; reports errors of asynchronous work. */
    public void synchronize() {
        drain();
    }

    /** Copies host bytes to device memory after the queued work, returning when done (for large one-off copies). */
    public void copyToDeviceNow(long destination, MemorySegment source) {
        onStream(s -> {
            driver.synchronize(s);
            driver.copyToDevice(destination, source, source.byteSize());
        });
    }

    /** Copies floats from the device, after all queued work. */
    public float[] readFloats(long source, int count) {
        bind();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment host = arena.allocate((long) count * Float.BYTES, 16);
            drain(s -> {
                if (count > 0) driver.copyToHostAsync(host, source, (long) count * Float.BYTES, s);
            });
            return host.toArray(ValueLayout.JAVA_FLOAT);
        }
    }

    /** Copies ints from the device, after all queued work (a step's chosen tokens). */
    public int[] readInts(long source, int count) {
        bind();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment host = arena.allocate((long) count * Integer.BYTES, 16);
            drain(s -> {
                if (count > 0) driver.copyToHostAsync(host, source, (long) count * Integer.BYTES, s);
            });
            return host.toArray(ValueLayout.JAVA_INT);
        }
    }

    /**
     * Issues what is held, waits for the stream, then rewinds the upload ring: with nothing in flight its memory is
     * free, and starting every step at the same offsets is what lets the step's launches repeat exactly. Only the
     * step's synchronisation points rewind (a read, {@link #synchronize()}), never a call made while an upload's
     * device pointer may still wait for its kernel.
     */
    private void drain() {
        drain(s -> {});
    }

    /**
     * The same after {@code last} has queued its work (a copy to the host) on the stream. The upload ring's lock is
     * taken first (the order its own half switches take: ring, then recorder), so no upload is staged between the wait
     * and the rewind; {@link Uploads#rewind} still leaves the ring as it is where another thread staged since its last
     * rewind, as that thread's device pointer may still wait for its kernel.
     */
    private void drain(Consumer<MemorySegment> last) {
        synchronized (uploads) {
            onStream(s -> {
                last.accept(s);
                driver.synchronize(s);
            });
            uploads.rewind();
        }
    }

    /** What the launch recorder did (graph replays, captures, fusions). */
    public StepRecorder.Stats launchStats() {
        return recorder.stats();
    }

    /** Device memory {@code {free, total}} in bytes. */
    public long[] memoryInfo() {
        bind();
        return driver.memoryInfo();
    }

    /** Releases the stream, handle, kernels and staging memory, then the primary context. */
    @Override
    public synchronized void close() {
        if (closed) return;
        bind();
        try {
            recorder.close();
            driver.synchronize(stream);
            matmulScratch.close();
            uploads.close();
            if (quantKernels != null) quantKernels.close();
            if (groupedKernels != null) groupedKernels.close();
            kernels.close();
            cublas.destroy(cublasHandle);
            driver.destroyStream(stream);
        } finally {
            closed = true;
            driver.releasePrimaryContext(device);
        }
    }
}
