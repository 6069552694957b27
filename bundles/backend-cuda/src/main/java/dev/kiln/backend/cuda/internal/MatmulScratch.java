package dev.kiln.backend.cuda.internal;

/**
 * Device buffers of a GEMM's activations split into bf16 high and low parts, and of the two partial products,
 * grown (never shrunk) to the largest product seen. Products run one after another on the stream, so one set
 * serves them all. The high and low parts are adjacent ({@code lo = hi + n}), so that one GEMM can take both as
 * the columns of a single operand.
 */
final class MatmulScratch implements AutoCloseable {
    private final CudaContext context;
    private long parts;
    private long partElements;
    private long products;
    private long productElements;

    MatmulScratch(CudaContext context) {
        this.context = context;
    }

    /** Two adjacent bf16 buffers of {@code n} elements each: {@code {hi, lo}} with {@code lo = hi + 2n} bytes. */
    synchronized long[] bf16Pair(long n) {
        if (2 * n > partElements) {
            if (parts != 0) context.free(parts);
            long grown = Math.max(2 * n, partElements * 2);
            parts = context.allocate(grown * 2);
            partElements = grown;
        }
        return new long[] {parts, parts + 2 * n};
    }

    /** An f32 buffer of at least {@code n} elements for partial products. */
    synchronized long products(long n) {
        if (n > productElements) {
            if (products != 0) context.free(products);
            long grown = Math.max(n, productElements * 2);
            products = context.allocate(grown * 4);
            productElements = grown;
        }
        return products;
    }

    @Override
    public synchronized void close() {
        if (parts != 0) context.free(parts);
        if (products != 0) context.free(products);
        parts = products = 0;
        partElements = productElements = 0;
    }
}
