package dev.kiln.backend.cuda.bindings;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * The CUDA driver API ({@code libcuda.so.1}) through FFM: the subset Kiln uses, each call checked. Handles
 * (contexts, streams, events, modules, functions) are {@link MemorySegment} addresses; device pointers are
 * {@code long}s ({@code CUdeviceptr}).
 *
 * <p>Every call acts on the calling thread's current context: the caller makes one current first
 * ({@link #setCurrentContext}).
 */
public final class CudaDriver {
    /** {@code CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT}. */
    public static final int ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    /** {@code CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR}. */
    public static final int ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    /** {@code CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR}. */
    public static final int ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    /** {@code CU_STREAM_NON_BLOCKING}: the stream does not synchronise with the legacy default stream. */
    public static final int STREAM_NON_BLOCKING = 1;
    /** {@code CU_EVENT_DEFAULT}: an event that records time. */
    public static final int EVENT_DEFAULT = 0;
    /** {@code CU_EVENT_DISABLE_TIMING}: a cheaper event for ordering only. */
    public static final int EVENT_DISABLE_TIMING = 2;
    /** {@code CU_STREAM_CAPTURE_MODE_THREAD_LOCAL}. */
    public static final int CAPTURE_MODE_THREAD_LOCAL = 1;
    /** {@code CUDA_ERROR_NO_DEVICE}. */
    public static final int ERROR_NO_DEVICE = 100;
    /** {@code CUDA_ERROR_NOT_FOUND}: among others, a module without a kernel of the name asked for. */
    public static final int ERROR_NOT_FOUND = 500;

    private static final String LIBRARY = "libcuda.so.1";

    private final MethodHandle cuInit;
    private final MethodHandle cuDriverGetVersion;
    private final MethodHandle cuDeviceGetCount;
    private final MethodHandle cuDeviceGet;
    private final MethodHandle cuDeviceGetName;
    private final MethodHandle cuDeviceGetAttribute;
    private final MethodHandle cuDeviceTotalMem;
    private final MethodHandle cuDevicePrimaryCtxRetain;
    private final MethodHandle cuDevicePrimaryCtxRelease;
    private final MethodHandle cuCtxSetCurrent;
    private final MethodHandle cuStreamCreate;
    private final MethodHandle cuStreamSynchronize;
    private final MethodHandle cuStreamDestroy;
    private final MethodHandle cuEventCreate;
    private final MethodHandle cuEventRecord;
    private final MethodHandle cuEventSynchronize;
    private final MethodHandle cuEventElapsedTime;
    private final MethodHandle cuEventDestroy;
    private final MethodHandle cuMemAlloc;
    private final MethodHandle cuMemFree;
    private final MethodHandle cuMemAllocHost;
    private final MethodHandle cuMemFreeHost;
    private final MethodHandle cuMemGetInfo;
    private final MethodHandle cuMemcpyHtoD;
    private final MethodHandle cuMemcpyHtoDAsync;
    private final MethodHandle cuMemcpyDtoHAsync;
    private final MethodHandle cuMemcpyDtoDAsync;
    private final MethodHandle cuMemsetD32Async;
    private final MethodHandle cuModuleLoadData;
    private final MethodHandle cuModuleGetFunction;
    private final MethodHandle cuModuleUnload;
    private final MethodHandle cuLaunchKernel;
    /** Null on drivers before CUDA 11.8, which lack it. */
    private final MethodHandle cuLaunchKernelEx;
    /**
     * One {@code CUlaunchConfig} (56 bytes) followed by room for two {@code CUlaunchAttribute}s (72 bytes each:
     * programmatic stream serialization, a cluster shape), per thread: launches are made from the thread that
     * records the step.
     */
    private final ThreadLocal<MemorySegment> extendedConfig = ThreadLocal.withInitial(() -> {
        MemorySegment config = Arena.global().allocate(LAUNCH_CONFIG_BYTES + 2 * LAUNCH_ATTRIBUTE_BYTES, 8);
        config.set(ADDRESS, 40, config.asSlice(LAUNCH_CONFIG_BYTES, 2 * LAUNCH_ATTRIBUTE_BYTES));
        return config;
    });
    private final MethodHandle cuFuncSetAttribute;
    /** Null on drivers before CUDA 11.8, which lack it. */
    private final MethodHandle cuOccupancyMaxActiveClusters;
    private final MethodHandle cuStreamBeginCapture;
    private final MethodHandle cuStreamEndCapture;
    private final MethodHandle cuGraphInstantiateWithFlags;
    private final MethodHandle cuGraphLaunch;
    private final MethodHandle cuGraphExecDestroy;
    private final MethodHandle cuGraphDestroy;
    private final MethodHandle cuGetErrorName;
    private final MethodHandle cuGetErrorString;

    private static final long LAUNCH_CONFIG_BYTES = 56, LAUNCH_ATTRIBUTE_BYTES = 72;
    private static final int LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6;
    private static final int LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION = 4;
    private static final int FUNCTION_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED = 14;
    private static final int FUNCTION_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;

    private CudaDriver(NativeLibraries.OpenedLibrary lib) {
        cuGetErrorName = lib.function("cuGetErrorName", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));
        cuGetErrorString = lib.function("cuGetErrorString", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));
        cuInit = lib.function("cuInit", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
        cuDriverGetVersion = lib.function("cuDriverGetVersion", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuDeviceGetCount = lib.function("cuDeviceGetCount", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuDeviceGet = lib.function("cuDeviceGet", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuDeviceGetName = lib.function("cuDeviceGetName", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
        cuDeviceGetAttribute = lib.function("cuDeviceGetAttribute",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
        cuDeviceTotalMem = lib.function("cuDeviceTotalMem_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuDevicePrimaryCtxRetain = lib.function("cuDevicePrimaryCtxRetain",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuDevicePrimaryCtxRelease = lib.function("cuDevicePrimaryCtxRelease_v2",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT));
        cuCtxSetCurrent = lib.function("cuCtxSetCurrent", FunctionDescriptor.of(JAVA_INT, ADDRESS), true);
        cuStreamCreate = lib.function("cuStreamCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuStreamSynchronize = lib.function("cuStreamSynchronize", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuStreamDestroy = lib.function("cuStreamDestroy_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuEventCreate = lib.function("cuEventCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuEventRecord = lib.function("cuEventRecord", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS), true);
        cuEventSynchronize = lib.function("cuEventSynchronize", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuEventElapsedTime = lib.function("cuEventElapsedTime",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS));
        cuEventDestroy = lib.function("cuEventDestroy_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuMemAlloc = lib.function("cuMemAlloc_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        cuMemFree = lib.function("cuMemFree_v2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        cuMemAllocHost = lib.function("cuMemAllocHost_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        cuMemFreeHost = lib.function("cuMemFreeHost", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuMemGetInfo = lib.function("cuMemGetInfo_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuMemcpyHtoD = lib.function("cuMemcpyHtoD_v2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, ADDRESS, JAVA_LONG));
        cuMemcpyHtoDAsync = lib.function("cuMemcpyHtoDAsync_v2",
                FunctionDescriptor.of(JAVA_INT, JAVA_LONG, ADDRESS, JAVA_LONG, ADDRESS), true);
        cuMemcpyDtoHAsync = lib.function("cuMemcpyDtoHAsync_v2",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG, ADDRESS));
        cuMemcpyDtoDAsync = lib.function("cuMemcpyDtoDAsync_v2",
                FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, ADDRESS), true);
        cuMemsetD32Async = lib.function("cuMemsetD32Async",
                FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_LONG, ADDRESS), true);
        cuModuleLoadData = lib.function("cuModuleLoadData", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuModuleGetFunction = lib.function("cuModuleGetFunction",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS));
        cuModuleUnload = lib.function("cuModuleUnload", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuLaunchKernel = lib.function("cuLaunchKernel", FunctionDescriptor.of(JAVA_INT, ADDRESS,
                JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, ADDRESS), true);
        MethodHandle launchEx;
        try {
            launchEx = lib.function("cuLaunchKernelEx", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS, ADDRESS), true);
        } catch (LibraryNotFoundException e) {
            launchEx = null;
        }
        cuLaunchKernelEx = launchEx;
        cuFuncSetAttribute = lib.function("cuFuncSetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
        MethodHandle activeClusters;
        try {
            activeClusters = lib.function("cuOccupancyMaxActiveClusters", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS));
        } catch (LibraryNotFoundException e) {
            activeClusters = null;
        }
        cuOccupancyMaxActiveClusters = activeClusters;
        cuStreamBeginCapture = lib.function("cuStreamBeginCapture_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuStreamEndCapture = lib.function("cuStreamEndCapture", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuGraphInstantiateWithFlags = lib.function("cuGraphInstantiateWithFlags",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, JAVA_LONG));
        cuGraphLaunch = lib.function("cuGraphLaunch", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS), true);
        cuGraphExecDestroy = lib.function("cuGraphExecDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuGraphDestroy = lib.function("cuGraphDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
    }

    /**
     * Opens {@code libcuda.so.1} and binds its functions (does not initialise the driver).
     *
     * @throws LibraryNotFoundException if the driver library or one of its functions is missing
     */
    public static CudaDriver load() {
        return new CudaDriver(NativeLibraries.open(LIBRARY));
    }

    /** {@code cuInit(0)}. */
    public void init() {
        check("cuInit", call(() -> (int) cuInit.invokeExact(0)));
    }

    /** The driver's CUDA version, e.g. 13000 for 13.0. */
    public int driverVersion() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(JAVA_INT);
            check("cuDriverGetVersion", call(() -> (int) cuDriverGetVersion.invokeExact(out)));
            return out.get(JAVA_INT, 0);
        }
    }

    /** Number of CUDA devices. */
    public int deviceCount() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(JAVA_INT);
            check("cuDeviceGetCount", call(() -> (int) cuDeviceGetCount.invokeExact(out)));
            return out.get(JAVA_INT, 0);
        }
    }

    /** The device handle of an ordinal. */
    public int device(int ordinal) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(JAVA_INT);
            check("cuDeviceGet", call(() -> (int) cuDeviceGet.invokeExact(out, ordinal)));
            return out.get(JAVA_INT, 0);
        }
    }

    /** The device's marketing name. */
    public String deviceName(int device) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(256);
            check("cuDeviceGetName", call(() -> (int) cuDeviceGetName.invokeExact(out, 256, device)));
            return out.getString(0);
        }
    }

    /** One {@code CU_DEVICE_ATTRIBUTE_*} value. */
    public int attribute(int device, int attribute) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(JAVA_INT);
            check("cuDeviceGetAttribute", call(() -> (int) cuDeviceGetAttribute.invokeExact(out, attribute, device)));
            return out.get(JAVA_INT, 0);
        }
    }

    /** The device's memory in bytes. */
    public long totalMemory(int device) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(JAVA_LONG);
            check("cuDeviceTotalMem", call(() -> (int) cuDeviceTotalMem.invokeExact(out, device)));
            return out.get(JAVA_LONG, 0);
        }
    }

    /** Retains the device's primary context (shared with any other CUDA user in the process). */
    public MemorySegment retainPrimaryContext(int device) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ADDRESS);
            check("cuDevicePrimaryCtxRetain", call(() -> (int) cuDevicePrimaryCtxRetain.invokeExact(out, device)));
            return out.get(ADDRESS, 0);
        }
    }

    /** Releases a retained primary context. */
    public void releasePrimaryContext(int device) {
        check("cuDevicePrimaryCtxRelease", call(() -> (int) cuDevicePrimaryCtxRelease.invokeExact(device)));
    }

    /** Makes the context current on the calling thread. */
    public void setCurrentContext(MemorySegment context) {
        check("cuCtxSetCurrent", call(() -> (int) cuCtxSetCurrent.invokeExact(context)));
    }

    /** Creates a stream with the given {@code CU_STREAM_*} flags. */
    public MemorySegment createStream(int flags) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ADDRESS);
            check("cuStreamCreate", call(() -> (int) cuStreamCreate.invokeExact(out, flags)));
            return out.get(ADDRESS, 0);
        }
    }

    /** Waits until all work on the stream is done; reports errors of earlier asynchronous work. */
    public void synchronize(MemorySegment stream) {
        check("cuStreamSynchronize", call(() -> (int) cuStreamSynchronize.invokeExact(stream)));
    }

    /** Destroys a stream. */
    public void destroyStream(MemorySegment stream) {
        check("cuStreamDestroy", call(() -> (int) cuStreamDestroy.invokeExact(stream)));
    }

    /** Creates an event with the given {@code CU_EVENT_*} flags. */
    public MemorySegment createEvent(int flags) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ADDRESS);
            check("cuEventCreate", call(() -> (int) cuEventCreate.invokeExact(out, flags)));
            return out.get(ADDRESS, 0);
        }
    }

    /** Records the event on the stream. */
    public void record(MemorySegment event, MemorySegment stream) {
        check("cuEventRecord", call(() -> (int) cuEventRecord.invokeExact(event, stream)));
    }

    /** Waits until the work before the event's last record is done. */
    public void synchronizeEvent(MemorySegment event) {
        check("cuEventSynchronize", call(() -> (int) cuEventSynchronize.invokeExact(event)));
    }

    /** Milliseconds between two recorded timing events. */
    public float elapsedMillis(MemorySegment start, MemorySegment end) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(JAVA_FLOAT);
            check("cuEventElapsedTime", call(() -> (int) cuEventElapsedTime.invokeExact(out, start, end)));
            return out.get(JAVA_FLOAT, 0);
        }
    }

    /** Destroys an event. */
    public void destroyEvent(MemorySegment event) {
        check("cuEventDestroy", call(() -> (int) cuEventDestroy.invokeExact(event)));
    }

    /** Allocates device memory (256-byte aligned). */
    public long allocate(long bytes) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(JAVA_LONG);
            check("cuMemAlloc(" + bytes + " bytes)", call(() -> (int) cuMemAlloc.invokeExact(out, bytes)));
            return out.get(JAVA_LONG, 0);
        }
    }

    /** Frees device memory. */
    public void free(long pointer) {
        check("cuMemFree", call(() -> (int) cuMemFree.invokeExact(pointer)));
    }

    /** Allocates page-locked host memory, which asynchronous copies need. */
    public MemorySegment allocateHost(long bytes) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ADDRESS);
            check("cuMemAllocHost(" + bytes + " bytes)", call(() -> (int) cuMemAllocHost.invokeExact(out, bytes)));
            return out.get(ADDRESS, 0).reinterpret(bytes);
        }
    }

    /** Frees page-locked host memory. */
    public void freeHost(MemorySegment memory) {
        check("cuMemFreeHost", call(() -> (int) cuMemFreeHost.invokeExact(memory)));
    }

    /** {@code {free, total}} device memory in bytes. */
    public long[] memoryInfo() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment free = arena.allocate(JAVA_LONG);
            MemorySegment total = arena.allocate(JAVA_LONG);
            check("cuMemGetInfo", call(() -> (int) cuMemGetInfo.invokeExact(free, total)));
            return new long[] {free.get(JAVA_LONG, 0), total.get(JAVA_LONG, 0)};
        }
    }

    /** Synchronous copy from host memory (any, page-locked or not) to the device. */
    public void copyToDevice(long destination, MemorySegment source, long bytes) {
        check("cuMemcpyHtoD", call(() -> (int) cuMemcpyHtoD.invokeExact(destination, source, bytes)));
    }

    /** Asynchronous copy from page-locked host memory to the device, ordered on the stream. */
    public void copyToDeviceAsync(long destination, MemorySegment source, long bytes, MemorySegment stream) {
        check("cuMemcpyHtoDAsync", call(() -> (int) cuMemcpyHtoDAsync.invokeExact(destination, source, bytes, stream)));
    }

    /** Copy from the device to host memory, ordered on the stream (complete on return only for pageable memory). */
    public void copyToHostAsync(MemorySegment destination, long source, long bytes, MemorySegment stream) {
        check("cuMemcpyDtoHAsync", call(() -> (int) cuMemcpyDtoHAsync.invokeExact(destination, source, bytes, stream)));
    }

    /** Device-to-device copy ordered on the stream. */
    public void copyOnDeviceAsync(long destination, long source, long bytes, MemorySegment stream) {
        check("cuMemcpyDtoDAsync", call(() -> (int) cuMemcpyDtoDAsync.invokeExact(destination, source, bytes, stream)));
    }

    /** Sets {@code count} 32-bit words to a value, ordered on the stream. */
    public void fill32Async(long destination, int value, long count, MemorySegment stream) {
        check("cuMemsetD32Async", call(() -> (int) cuMemsetD32Async.invokeExact(destination, value, count, stream)));
    }

    /** Loads a module from a CUBIN (or PTX) image. */
    public MemorySegment loadModule(byte[] image) {
        try (Arena arena = Arena.ofConfined()) {
            // One extra zero byte: a PTX image must be NUL-terminated, a CUBIN does not mind.
            MemorySegment data = arena.allocate(image.length + 1L, 16);
            MemorySegment.copy(image, 0, data, JAVA_BYTE, 0, image.length);
            MemorySegment out = arena.allocate(ADDRESS);
            check("cuModuleLoadData", call(() -> (int) cuModuleLoadData.invokeExact(out, data)));
            return out.get(ADDRESS, 0);
        }
    }

    /** A kernel of a loaded module, by its (unmangled, {@code extern "C"}) name. */
    public MemorySegment function(MemorySegment module, String name) {
        MemorySegment function = findFunction(module, name);
        if (function == null) check("cuModuleGetFunction(" + name + ")", ERROR_NOT_FOUND);
        return function;
    }

    /** A kernel of a loaded module by its name, or null where the module has none of that name. */
    public MemorySegment findFunction(MemorySegment module, String name) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ADDRESS);
            MemorySegment cName = arena.allocateFrom(name);
            int result = call(() -> (int) cuModuleGetFunction.invokeExact(out, module, cName));
            if (result == ERROR_NOT_FOUND) return null;
            check("cuModuleGetFunction(" + name + ")", result);
            return out.get(ADDRESS, 0);
        }
    }

    /**
     * Lets a function launch with up to {@code bytes} of dynamic shared memory (past the default 48 KiB); false where
     * the device has less.
     */
    public boolean allowDynamicSharedBytes(MemorySegment function, int bytes) {
        return call(() -> (int) cuFuncSetAttribute.invokeExact(function, FUNCTION_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes)) == 0;
    }

    /**
     * Lets a function run in clusters larger than the portable 8 blocks (16 on Hopper); false where the driver or
     * device refuses.
     */
    public boolean allowNonPortableClusterSize(MemorySegment function) {
        return call(() -> (int) cuFuncSetAttribute.invokeExact(function, FUNCTION_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED,
                1)) == 0;
    }

    /**
     * How many clusters of {@code clusterY} blocks of {@code block} threads (and {@code sharedBytes} of dynamic shared
     * memory each) of a function the device can hold at once: 0 where it cannot place one (a partition without a large
     * enough GPC, say), the driver lacks the query or refuses it.
     */
    public int maxActiveClusters(MemorySegment function, int block, int sharedBytes, int clusterY) {
        if (cuOccupancyMaxActiveClusters == null) return 0;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment config = arena.allocate(LAUNCH_CONFIG_BYTES + LAUNCH_ATTRIBUTE_BYTES, 8);
            MemorySegment attribute = config.asSlice(LAUNCH_CONFIG_BYTES, LAUNCH_ATTRIBUTE_BYTES);
            launchShape(config, 1, clusterY, 1, block, 1, 1, sharedBytes, MemorySegment.NULL); // a grid of one cluster
            config.set(ADDRESS, 40, attribute);
            config.set(JAVA_INT, 48, 1);
            clusterAttribute(attribute, clusterY);
            MemorySegment out = arena.allocate(JAVA_INT);
            int result = call(() -> (int) cuOccupancyMaxActiveClusters.invokeExact(out, function, config));
            return result == 0 ? out.get(JAVA_INT, 0) : 0;
        }
    }

    /** Unloads a module. */
    public void unloadModule(MemorySegment module) {
        check("cuModuleUnload", call(() -> (int) cuModuleUnload.invokeExact(module)));
    }

    /**
     * Enqueues a kernel on the stream.
     *
     * @param parameters {@code void*[]} pointing at each argument's value
     */
    public void launch(MemorySegment function, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ,
                       int sharedBytes, MemorySegment stream, MemorySegment parameters, String name) {
        int result = call(() -> (int) cuLaunchKernel.invokeExact(function, gridX, gridY, gridZ, blockX, blockY, blockZ,
                sharedBytes, stream, parameters, MemorySegment.NULL));
        if (result != 0) check("cuLaunchKernel(" + name + ")", result);
    }

    /** Whether {@link #launchExtended} is available (the driver has {@code cuLaunchKernelEx}). */
    public boolean supportsProgrammaticLaunch() {
        return cuLaunchKernelEx != null;
    }

    /**
     * Enqueues a kernel through {@code cuLaunchKernelEx} (needs {@link #supportsProgrammaticLaunch}). Programmatic
     * when asked: it may start before the kernel ahead of it on the stream has finished (programmatic dependent launch,
     * compute capability 9.0 and later; ignored before), and must then execute {@code griddepcontrol.wait} before it
     * touches anything that kernel reads or writes. With the grid's blocks grouped along y into thread block clusters
     * of {@code clusterY} when that is above 1 (compute capability 9.0 and later; sizes above 8 need
     * {@link #allowNonPortableClusterSize} first).
     */
    public void launchExtended(MemorySegment function, int gridX, int gridY, int gridZ, int blockX, int blockY,
                               int blockZ, int sharedBytes, MemorySegment stream, MemorySegment parameters, String name,
                               boolean programmatic, int clusterY) {
        MemorySegment config = extendedConfig.get();
        MemorySegment attributes = config.asSlice(LAUNCH_CONFIG_BYTES, 2 * LAUNCH_ATTRIBUTE_BYTES);
        attributes.fill((byte) 0);
        int count = 0;
        if (programmatic) {
            attributes.set(JAVA_INT, 0, LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION);
            attributes.set(JAVA_INT, 8, 1); // programmaticStreamSerializationAllowed
            count++;
        }
        if (clusterY > 1) clusterAttribute(attributes.asSlice(count++ * LAUNCH_ATTRIBUTE_BYTES), clusterY);
        config.set(JAVA_INT, 48, count); // numAttrs
        launchShape(config, gridX, gridY, gridZ, blockX, blockY, blockZ, sharedBytes, stream);
        int result = call(() -> (int) cuLaunchKernelEx.invokeExact(config, function, parameters, MemorySegment.NULL));
        if (result != 0) check("cuLaunchKernelEx(" + name + ")", result);
    }

    /** A {@code CUlaunchConfig}'s grid, block, dynamic shared memory and stream. */
    private static void launchShape(MemorySegment config, int gridX, int gridY, int gridZ, int blockX, int blockY,
                                    int blockZ, int sharedBytes, MemorySegment stream) {
        config.set(JAVA_INT, 0, gridX);
        config.set(JAVA_INT, 4, gridY);
        config.set(JAVA_INT, 8, gridZ);
        config.set(JAVA_INT, 12, blockX);
        config.set(JAVA_INT, 16, blockY);
        config.set(JAVA_INT, 20, blockZ);
        config.set(JAVA_INT, 24, sharedBytes);
        config.set(ADDRESS, 32, stream);
    }

    /** A {@code CUlaunchAttribute} asking for clusters of {@code clusterY} blocks along y. */
    private static void clusterAttribute(MemorySegment attribute, int clusterY) {
        attribute.set(JAVA_INT, 0, LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION);
        attribute.set(JAVA_INT, 8, 1);
        attribute.set(JAVA_INT, 12, clusterY);
        attribute.set(JAVA_INT, 16, 1);
    }

    /**
     * Starts capturing the stream's work into a graph instead of running it ({@code CU_STREAM_CAPTURE_MODE_THREAD_LOCAL}:
     * only this thread's unsafe calls are refused while capturing).
     */
    public void beginCapture(MemorySegment stream) {
        check("cuStreamBeginCapture", call(() -> (int) cuStreamBeginCapture.invokeExact(stream, CAPTURE_MODE_THREAD_LOCAL)));
    }

    /** Ends a capture and returns the captured graph (to instantiate, then destroy). */
    public MemorySegment endCapture(MemorySegment stream) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ADDRESS);
            check("cuStreamEndCapture", call(() -> (int) cuStreamEndCapture.invokeExact(stream, out)));
            return out.get(ADDRESS, 0);
        }
    }

    /** Instantiates a graph into an executable graph. */
    public MemorySegment instantiate(MemorySegment graph) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ADDRESS);
            check("cuGraphInstantiate", call(() -> (int) cuGraphInstantiateWithFlags.invokeExact(out, graph, 0L)));
            return out.get(ADDRESS, 0);
        }
    }

    /** Enqueues an executable graph on the stream. */
    public void launchGraph(MemorySegment graphExec, MemorySegment stream) {
        check("cuGraphLaunch", call(() -> (int) cuGraphLaunch.invokeExact(graphExec, stream)));
    }

    /** Destroys an executable graph. */
    public void destroyGraphExec(MemorySegment graphExec) {
        check("cuGraphExecDestroy", call(() -> (int) cuGraphExecDestroy.invokeExact(graphExec)));
    }

    /** Destroys a graph. */
    public void destroyGraph(MemorySegment graph) {
        check("cuGraphDestroy", call(() -> (int) cuGraphDestroy.invokeExact(graph)));
    }

    /** Throws a {@link CudaException} describing a non-zero result. */
    public void check(String call, int result) {
        if (result == 0) return;
        throw new CudaException(call, result, describe(result));
    }

    /** The driver's name and description of a result code. */
    public String describe(int result) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment name = arena.allocate(ADDRESS);
            MemorySegment text = arena.allocate(ADDRESS);
            int a = call(() -> (int) cuGetErrorName.invokeExact(result, name));
            int b = call(() -> (int) cuGetErrorString.invokeExact(result, text));
            String n = a == 0 ? name.get(ADDRESS, 0).reinterpret(256).getString(0) : "CUDA error";
            String s = b == 0 ? text.get(ADDRESS, 0).reinterpret(1024).getString(0) : "unknown";
            return n + ": " + s;
        }
    }

    /** A native call that returns a status. */
    @FunctionalInterface
    interface NativeCall {
        int invoke() throws Throwable;
    }

    static int call(NativeCall call) {
        try {
            return call.invoke();
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }
}
