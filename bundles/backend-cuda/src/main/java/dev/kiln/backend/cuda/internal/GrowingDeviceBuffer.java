package dev.kiln.backend.cuda.internal;

import java.util.function.LongConsumer;
import java.util.function.LongUnaryOperator;

/**
 * Device memory that only grows: to at least twice its size whenever a caller needs more, so that once the largest
 * request has been seen every later one finds it at the same address, which a replayed CUDA graph relies on (its
 * nodes hold the address). Scratch of this kind serves work that runs one launch after another on the stream.
 * Not synchronised: its owner's lock guards it.
 */
public final class GrowingDeviceBuffer implements AutoCloseable {
    private final LongUnaryOperator allocate;
    private final LongConsumer free;
    private long pointer;
    private long bytes;

    /** An empty buffer in the context's memory. */
    public GrowingDeviceBuffer(CudaContext context) {
        this(context::allocate, context::free);
    }

    /** An empty buffer over an allocator (bytes to address) and its release. */
    GrowingDeviceBuffer(LongUnaryOperator allocate, LongConsumer free) {
        this.allocate = allocate;
        this.free = free;
    }

    /** The buffer's address, after growing it to at least {@code needed} bytes when it is smaller. */
    public long atLeast(long needed) {
        if (needed > bytes) {
            long grown = Math.max(needed, 2 * bytes);
            release();
            pointer = allocate.applyAsLong(grown);
            bytes = grown;
        }
        return pointer;
    }

    private void release() {
        if (pointer != 0) free.accept(pointer);
        pointer = 0;
        bytes = 0;
    }

    @Override
    public void close() {
        release();
    }
}
