package dev.kiln.quant.cpu;

import dev.kiln.backend.cpu.WorkerPool;
import java.util.Map;
import java.util.WeakHashMap;

/**
 * Reusable float buffers of the integer-weight kernels on one worker pool, so that a forward pass allocates nothing
 * per multiplication.
 *
 * <p>Worker buffers are indexed by the worker index the pool hands to its tasks (loops of one pool never overlap, so
 * one buffer per worker and slot suffices); caller buffers belong to the thread that issues the multiplication, since
 * several threads may drive models on one backend. One scratch serves every weight on a pool: {@link #of}.
 */
public final class KernelScratch {
    /** Slots per worker and per caller; each kernel path documents which slots it uses. */
    static final int SLOTS = 3;
    private static final Map<WorkerPool, KernelScratch> BY_POOL = new WeakHashMap<>();

    private final float[][][] workers;
    private final ThreadLocal<float[][]> callers = ThreadLocal.withInitial(() -> new float[SLOTS][]);
    /** Per calling thread: integer activations of the decode kernels that quantize them. */
    private final ThreadLocal<short[][]> callerShorts = ThreadLocal.withInitial(() -> new short[1][]);

    /** Scratch for a pool of that many threads. */
    public KernelScratch(int threads) {
        if (threads < 1) throw new IllegalArgumentException("threads must be at least 1, got " + threads);
        workers = new float[threads][SLOTS][];
    }

    /** The scratch shared by every weight of that pool (kept as long as the pool is reachable). */
    public static synchronized KernelScratch of(WorkerPool pool) {
        return BY_POOL.computeIfAbsent(pool, p -> new KernelScratch(p.threads()));
    }

    /** A buffer of at least {@code size} floats for worker {@code worker}, slot {@code slot}; contents undefined. */
    float[] workerBuffer(int worker, int slot, long size) {
        float[][] mine = workers[worker];
        float[] b = mine[slot];
        if (b == null || b.length < size) mine[slot] = b = new float[checkedSize(size)];
        return b;
    }

    /** A buffer of at least {@code size} floats for the calling thread, slot {@code slot}; contents undefined. */
    float[] callerBuffer(int slot, long size) {
        float[][] mine = callers.get();
        float[] b = mine[slot];
        if (b == null || b.length < size) mine[slot] = b = new float[checkedSize(size)];
        return b;
    }

    /** A buffer of at least {@code size} shorts for the calling thread; contents undefined. */
    short[] callerShortBuffer(long size) {
        short[][] mine = callerShorts.get();
        short[] b = mine[0];
        if (b == null || b.length < size) mine[0] = b = new short[checkedSize(size)];
        return b;
    }

    private static int checkedSize(long size) {
        if (size > Integer.MAX_VALUE - 8) throw new IllegalArgumentException("scratch of " + size + " floats is too large");
        // Headroom, so that slowly growing batches do not reallocate every step.
        return (int) Math.min(Integer.MAX_VALUE - 8, size + size / 4);
    }
}
