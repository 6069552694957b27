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
}
