package dev.kiln.backend.cuda.internal;

/**
 * Device buffers of a GEMM's activations split into bf16 high and low parts, and of the two partial products,
 * grown (never shrunk) to the largest product seen. Products run one after another on the stream, so one set
 * serves them all. The high and low parts are adjacent ({@code lo = hi + n}), so that one GEMM can take both as
 * the columns of a single operand.
 */
final class MatmulScratch implements AutoCloseable {
    private final GrowingDeviceBuffer parts;
    private final GrowingDeviceBuffer products;

    MatmulScratch(CudaContext context) {
        this.parts = new GrowingDeviceBuffer(context);
        this.products = new GrowingDeviceBuffer(context);
    }

    /** Two adjacent bf16 buffers of {@code n} elements each: {@code {hi, lo}} with {@code lo = hi + 2n} bytes. */
    synchronized long[] bf16Pair(long n) {
        long hi = parts.atLeast(2 * n * 2);
        return new long[] {hi, hi + 2 * n};
    }

    /** An f32 buffer of at least {@code n} elements for partial products. */
    synchronized long products(long n) {
        return products.atLeast(n * 4);
    }

    @Override
    public synchronized void close() {
        parts.close();
        products.close();
    }
}
