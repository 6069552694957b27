package dev.kiln.api.tensor;

/**
 * A tensor owned by a {@link dev.kiln.api.backend.ComputeBackend}: on the CPU a region of host memory, on a GPU
 * a device allocation. Models only pass tensors between the operations of the backend that made them; reading
 * the values back is an explicit copy ({@link dev.kiln.api.backend.ComputeBackend#read}).
 *
 * <p>Shapes are row-major; a 2-D activation tensor is {@code [tokens, features]}. A tensor whose leading
 * dimension is larger than needed may be used for fewer rows through {@link #rows(int)}, which is how one
 * workspace serves batches of different sizes without reallocation.
 */
public interface Tensor extends AutoCloseable {
    /** The element type. */
    DType dtype();

    /** The shape, outermost dimension first. The returned array is a copy. */
    long[] shape();

    /** Number of elements. */
    default long size() {
        long n = 1;
        for (long d : shape()) n *= d;
        return n;
    }

    /** Size of the outermost dimension. */
    default int rowCount() {
        return (int) shape()[0];
    }

    /** Elements per row: the product of all but the outermost dimension. */
    default int rowLength() {
        long[] s = shape();
        long n = 1;
        for (int i = 1; i < s.length; i++) n *= s[i];
        return (int) n;
    }

    /**
     * A view of the first {@code rows} rows, sharing storage with this tensor.
     *
     * @throws IllegalArgumentException if {@code rows} exceeds {@link #rowCount()}
     */
    Tensor rows(int rows);

    /** Releases the storage (a view releases nothing). Using a closed tensor is undefined. */
    @Override
    void close();
}
