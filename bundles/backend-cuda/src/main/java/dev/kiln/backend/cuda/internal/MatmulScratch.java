package dev.kiln.backend.cuda.internal;

/**
 * Device buffers for the bf16 high and low parts of a GEMM's activations, grown (never shrunk) to the largest
 * product seen. Products run one after another on the stream, so one pair serves them all.
 */
final class MatmulScratch implements AutoCloseable {
    private final CudaContext context;
    private long hi;
    private long lo;
    private long elements;

    MatmulScratch(CudaContext context) {
        this.context = context;
    }

    /** Buffers of at least {@code n} bf16 elements each: {@code {hi, lo}}. */
    synchronized long[] bf16Pair(long n) {
        if (n > elements) {
            release();
            long grown = Math.max(n, elements * 2);
            hi = context.allocate(grown * 2);
            lo = context.allocate(grown * 2);
            elements = grown;
        }
        return new long[] {hi, lo};
    }

    private void release() {
        if (hi != 0) context.free(hi);
        if (lo != 0) context.free(lo);
        hi = lo = 0;
        elements = 0;
    }

    @Override
    public synchronized void close() {
        release();
    }
}
