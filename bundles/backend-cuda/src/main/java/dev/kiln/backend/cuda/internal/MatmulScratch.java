package dev.kiln.backend.cuda.internal;

/**
 * Device buffers of a GEMM's activations split into bf16 high and low parts, and of the two partial products,
 * grown (never shrunk) to the largest product seen. Products run one after another on the stream, so one set
 * serves them all, except that the parts come in two buffers used in turn: a product that writes the next product's
 * parts itself (the gated MLP's, for the down product) still reads its own from the other. The high and low parts are
 * adjacent ({@code lo = hi + n}), so that one GEMM can take both as the columns of a single operand.
 */
final class MatmulScratch implements AutoCloseable {
    private final StepRecorder recorder;
    private final GrowingDeviceBuffer[] parts = new GrowingDeviceBuffer[2];
    private int nextParts;
    private final GrowingDeviceBuffer products;
    /** The activations whose parts the buffers hold, and the recorder's mark right after the product that split them. */
    private long splitInput, splitLength, splitMark = -1;
    /** Where those parts are. */
    private long[] splitParts;
    /** Where that product wrote (its activations must not be there). */
    private long productOutput, productBytes;

    MatmulScratch(CudaContext context) {
        this.recorder = context.recorder();
        this.parts[0] = new GrowingDeviceBuffer(context);
        this.parts[1] = new GrowingDeviceBuffer(context);
        this.products = new GrowingDeviceBuffer(context);
    }

    /**
     * Whether the parts already hold {@code n} activations at {@code x}: the product queued last split exactly these,
     * nothing was queued after it (its own launches aside), and it did not write them. Products of the same
     * activations (q, k and v; gate and up) then split them once.
     */
    synchronized boolean holdsSplit(long x, long n) {
        return x == splitInput && n == splitLength && recorder.mark() == splitMark
                && Kernels.disjoint(x, 4 * n, productOutput, productBytes);
    }

    /** The parts ({@code {hi, lo}}) that hold the split of {@code n} activations at x (see {@link #holdsSplit}), or null. */
    synchronized long[] heldParts(long x, long n) {
        return holdsSplit(x, n) ? splitParts.clone() : null;
    }

    /**
     * Records that the product just queued split {@code n} activations at {@code x} into {@code parts} and wrote
     * {@code bytes} at out.
     */
    synchronized void splitBy(long x, long n, long out, long bytes, long[] parts) {
        splitParts = parts.clone();
        splitInput = x;
        splitLength = n;
        productOutput = out;
        productBytes = bytes;
        splitMark = recorder.mark();
    }

    /**
     * Two adjacent bf16 buffers of {@code n} elements each: {@code {hi, lo}} with {@code lo = hi + 2n} bytes, from the
     * buffer the last call did not use.
     */
    synchronized long[] bf16Pair(long n) {
        long hi = parts[nextParts].atLeast(2 * n * 2);
        nextParts ^= 1;
        return new long[] {hi, hi + 2 * n};
    }

    /** An f32 buffer of at least {@code n} elements for partial products. */
    synchronized long products(long n) {
        return products.atLeast(n * 4);
    }

    @Override
    public synchronized void close() {
        parts[0].close();
        parts[1].close();
        products.close();
    }
}
