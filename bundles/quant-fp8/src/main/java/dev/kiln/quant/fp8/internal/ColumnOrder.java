package dev.kiln.quant.fp8.internal;

import static dev.kiln.quant.fp8.internal.E4m3.CHUNK;
import static dev.kiln.quant.fp8.internal.E4m3.L;

/**
 * The order in which the kernels visit a weight row's columns. Within every whole {@link E4m3#CHUNK} of a scale
 * block, the chunk's codes decode as four vectors holding columns {@code 4j + 0}, {@code 4j + 1}, {@code 4j + 2},
 * {@code 4j + 3}; the columns after a block's last whole chunk keep their order. Activations are permuted into this
 * order once per multiplication, which costs nothing next to streaming the weights, and the dot products are the
 * same sums.
 */
final class ColumnOrder {
    /** {@code natural[p]}: the column visited at position p. */
    private final int[] natural;

    ColumnOrder(int columns, int blockColumns) {
        this.natural = new int[columns];
        for (int c0 = 0; c0 < columns; c0 += blockColumns) {
            int end = Math.min(columns, c0 + blockColumns);
            int vectorEnd = vectorEnd(c0, end);
            for (int base = c0; base < vectorEnd; base += CHUNK) {
                for (int k = 0; k < 4; k++) {
                    for (int j = 0; j < L; j++) natural[base + k * L + j] = base + 4 * j + k;
                }
            }
            for (int p = vectorEnd; p < end; p++) natural[p] = p;
        }
    }

    /** The end of the whole chunks of the block spanning columns {@code [start, end)}. */
    static int vectorEnd(int start, int end) {
        return start + (end - start) / CHUNK * CHUNK;
    }

    /** The column visited at position {@code position}. */
    int natural(int position) {
        return natural[position];
    }

    /** Copies {@code rows} rows of {@code columns} values from natural into visiting order. */
    void permute(float[] x, int xOffset, int rows, float[] dst, int dstOffset) {
        int columns = natural.length;
        for (int r = 0; r < rows; r++) {
            int from = xOffset + r * columns;
            int to = dstOffset + r * columns;
            for (int p = 0; p < columns; p++) dst[to + p] = x[from + natural[p]];
        }
    }
}
