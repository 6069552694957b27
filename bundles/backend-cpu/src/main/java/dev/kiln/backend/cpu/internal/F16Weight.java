package dev.kiln.backend.cpu.internal;

import dev.kiln.backend.cpu.WorkerPool;
import java.lang.foreign.MemorySegment;

/** An IEEE half-precision weight, memory-mapped; rows are widened exactly to f32 in per-thread scratch. */
final class F16Weight extends DenseWeight {
    F16Weight(MemorySegment data, int rows, int columns, WorkerPool pool, Scratch scratch) {
        super(data, rows, columns, 2, pool, scratch);
    }

    @Override
    public String format() {
        return "f16";
    }

    @Override
    void loadRow(int row, int column, int count, float[] dst, int dstOffset) {
        Conversions.f16ToFloat(data, row * rowBytes + 2L * column, dst, dstOffset, count);
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
