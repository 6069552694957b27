package dev.kiln.backend.cuda.internal;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.tensor.Tensor;

/**
 * A weight of this backend whose rows can be gathered by ids that are already in device memory: an embedding lookup
 * of tokens that the step ahead chose on the device and the host has not read back.
 */
public interface DeviceRowGather extends Weight {
    /**
     * {@code out[t] = row ids[t]} (dequantized to F32) for {@code t < count}.
     *
     * @param deviceIds {@code count} row ids in device memory, each in {@code [0, rows())}: the caller vouches for
     *                  them, the kernel reads what it is given
     */
    void gatherRows(long deviceIds, int count, Tensor out);

    /** The context the weight lives in. */
    CudaContext context();

    /** Checks the ids on the host, uploads them and gathers by the device ids. */
    @Override
    default void gatherRows(int[] ids, Tensor out) {
        gatherRows(ids.length == 0 ? 0 : uploadRowIds(context(), ids, rows()), ids.length, out);
    }

    /**
     * Row ids checked against a table of {@code rows} rows and uploaded for the kernels that follow (the host-side
     * half of {@link Weight#gatherRows(int[], Tensor)}).
     *
     * @throws IllegalArgumentException naming the first id outside the table
     */
    static long uploadRowIds(CudaContext context, int[] ids, int rows) {
        for (int id : ids) {
            if (id < 0 || id >= rows) throw new IllegalArgumentException("row " + id + " outside [0, " + rows + ")");
        }
        return context.uploads().ints(ids);
    }

    /**
     * The F32 tensor a gather of {@code count} rows of {@code columns} writes, checked.
     *
     * @throws IllegalArgumentException if it does not hold that many rows of that width
     */
    static CudaTensor gatherOutput(CudaContext context, Tensor out, int count, int columns) {
        CudaTensor o = CudaTensor.f32(out, context);
        if (o.rowLength() != columns || o.rowCount() < count) {
            throw new IllegalArgumentException("cannot gather " + count + " rows of " + columns + " into " + o);
        }
        return o;
    }
}
