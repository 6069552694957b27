package dev.kiln.backend.cpu.internal;

import dev.kiln.backend.cpu.WorkerPool;
import java.lang.foreign.MemorySegment;

/** An f32 weight, memory-mapped; rows are copied to per-thread scratch, where the heap kernels read them. */
final class F32Weight extends DenseWeight {
    F32Weight(MemorySegment data, int rows, int columns, WorkerPool pool, Scratch scratch) {
        super(data, rows, columns, 4, pool, scratch);
    }

    @Override
    public String format() {
        return "f32";
    }

    @Override
    void loadRow(int row, int column, int count, float[] dst, int dstOffset) {
        Conversions.f32ToFloat(data, row * rowBytes + 4L * column, dst, dstOffset, count);
    }

    @Override
    void stream(float[] x, int xOffset, int tokens, float[] out, int outOffset) {
        int groups = (rows + WidenedRows.ROWS - 1) / WidenedRows.ROWS;
        pool.parallelFor(groups, grain(groups), (worker, from, to) -> {
            float[] buffer = scratch.workerBuffer(worker, 0, (long) WidenedRows.ROWS * columns);
            for (int g = from; g < to; g++) {
                WidenedRows.multiply(this::loadRow, rows, columns, g * WidenedRows.ROWS, buffer, x, xOffset,
                        tokens, out, outOffset);
            }
        });
    }
}
