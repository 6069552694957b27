package dev.kiln.api.backend;

import dev.kiln.api.tensor.Tensor;

/**
 * A weight matrix {@code [rows, columns]} resident on one backend, in some storage format (dense bf16, INT8 per
 * channel, INT4 groups, FP8 blocks, ...). The format's own kernels do the multiplication, so a quantizer bundle
 * adds a format without the models or the backend knowing its layout.
 */
public interface Weight extends AutoCloseable {
    /** The storage format, e.g. {@code bf16}, {@code f32}, {@code weight_only_int8}, {@code fp8}. */
    String format();

    /** Output features (the number of rows). */
    int rows();

    /** Input features (the number of columns). */
    int columns();

    /** Bytes the weight occupies in its storage format, scales included. */
    long bytes();

    /**
     * {@code out[t, r] = Σ_c x[t, c] · W[r, c]} for every row t of x. x is {@code [T, columns]} F32 and out
     * {@code [T, rows]} F32, both of this weight's backend. A kernel may use different algorithms for one row
     * (decode: stream the weight once) and many rows (prefill: cache-blocked), but computes the same sums.
     */
    void multiply(Tensor x, Tensor out);

    /**
     * {@code out[t] = W[ids[t]]} as F32: used when the weight is an embedding table.
     *
     * @throws UnsupportedOperationException if the format cannot gather rows
     */
    void gatherRows(int[] ids, Tensor out);

    /** Releases the weight's storage if it owns any (a mapped weight owns none). */
    @Override
    default void close() {}
}
