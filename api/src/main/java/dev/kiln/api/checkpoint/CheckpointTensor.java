package dev.kiln.api.checkpoint;

import dev.kiln.api.tensor.DType;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

/**
 * One tensor of a checkpoint, read in place: {@link #data()} is a slice of the memory-mapped file, little-endian,
 * row-major, exactly {@code size() * dtype().byteSize()} bytes. Nothing is copied until a backend or quantizer
 * decides to.
 *
 * @param name  the tensor's name in the checkpoint, e.g. {@code model.layers.0.self_attn.q_proj.weight}
 * @param dtype the element type as stored
 * @param shape the shape as stored, outermost dimension first
 * @param data  the bytes, valid while the owning {@link Checkpoint} is open
 * @param file  the file the bytes come from, for error messages
 */
public record CheckpointTensor(String name, DType dtype, long[] shape, MemorySegment data, Path file) {
    /** Number of elements. */
    public long size() {
        long n = 1;
        for (long d : shape) n *= d;
        return n;
    }

    /** Rows of a 2-D tensor (its outermost dimension). */
    public int rows() {
        return (int) shape[0];
    }

    /** Columns of a 2-D tensor (its innermost dimension). */
    public int columns() {
        return (int) shape[shape.length - 1];
    }
}
