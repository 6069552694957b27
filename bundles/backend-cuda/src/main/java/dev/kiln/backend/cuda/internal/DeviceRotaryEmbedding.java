package dev.kiln.backend.cuda.internal;

import dev.kiln.api.backend.RotaryEmbedding;
import dev.kiln.api.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Objects;

/**
 * Rotary position embedding on the device, with cos and sin tables per position kept in device memory and grown
 * (to the next power of two, at least 256 positions) when a longer position appears.
 *
 * <p>The tables are computed on the host exactly as the CPU backend computes them (angles, cos, sin and the
 * magnitude in double precision, rounded once to float), so both backends rotate by identical factors.
 */
public final class DeviceRotaryEmbedding implements RotaryEmbedding, AutoCloseable {
    private final CudaContext context;
    private final float[] frequencies;
    private final float magnitude;
    private final Layout layout;
    private int positions;
    /** The device tables, apart from the rotary so that they can be freed once it is collected. */
    private final Tables tables = new Tables();

    /** A rotary's cos and sin tables in device memory (0 before the first use). */
    private static final class Tables {
        long cos;
        long sin;

        /** Frees both tables; they are 0 afterwards. */
        synchronized void free(CudaContext context) {
            try {
                Cleanup.all(() -> {
                    if (cos != 0) context.free(cos);
                }, () -> {
                    if (sin != 0) context.free(sin);
                });
            } finally {
                cos = sin = 0;
            }
        }
    }

    public DeviceRotaryEmbedding(CudaContext context, float[] inverseFrequencies, float magnitude, Layout layout) {
        if (inverseFrequencies.length == 0) throw new IllegalArgumentException("no rotary frequencies");
        this.context = context;
        this.frequencies = inverseFrequencies.clone();
        this.magnitude = magnitude;
        this.layout = Objects.requireNonNull(layout, "layout");
    }

    @Override
    public int rotaryDim() {
        return 2 * frequencies.length;
    }

    @Override
    public void apply(Tensor x, int[] positions, int heads, int headStride, int offset) {
        CudaTensor t = CudaTensor.f32(x, context);
        int rows = t.rowCount();
        int half = frequencies.length;
        if (positions.length < rows) {
            throw new IllegalArgumentException(positions.length + " positions for " + rows + " rows");
        }
        if (offset < 0 || offset + 2 * half > headStride) {
            throw new IllegalArgumentException("rotary part [" + offset + ", " + (offset + 2 * half)
                    + ") does not fit a head of " + headStride);
        }
        if ((long) heads * headStride > t.rowLength()) {
            throw new IllegalArgumentException(heads + " heads of " + headStride + " exceed rows of " + t.rowLength());
        }
        int maxPosition = -1;
        for (int r = 0; r < rows; r++) {
            if (positions[r] < 0) throw new IllegalArgumentException("negative position " + positions[r]);
            maxPosition = Math.max(maxPosition, positions[r]);
        }
        if (rows == 0 || heads == 0) return;
        long[] tables = tablesFor(maxPosition);
        long devicePositions = context.uploads().ints(positions);
        context.kernels().rotary(t.pointer(), devicePositions, tables[0], tables[1], rows, t.rowLength(), heads, headStride,
                offset, half, layout == Layout.INTERLEAVED);
    }

    /**
     * Positions of the tables that cover {@code maxPosition}: the next power of two above it, at least 256.
     *
     * @throws IllegalArgumentException from position 2^30 on (no power of two above it fits an int)
     */
    static int tablePositions(int maxPosition) {
        if (maxPosition < 0 || maxPosition >= 1 << 30) {
            throw new IllegalArgumentException("rotary position " + maxPosition + " is outside the tables' range, 0 to 2^30 - 1");
        }
        return Math.max(256, Integer.highestOneBit(maxPosition) << 1);
    }

    private synchronized long[] tablesFor(int maxPosition) {
        if (maxPosition >= positions) {
            int grown = tablePositions(maxPosition);
            int half = frequencies.length;
            long count = (long) grown * half;
            long newCos = context.allocate(count * Float.BYTES);
            long newSin = 0;
            try (Arena arena = Arena.ofConfined()) {
                newSin = context.allocate(count * Float.BYTES);
                MemorySegment c = arena.allocate(count * Float.BYTES, 16);
                MemorySegment s = arena.allocate(count * Float.BYTES, 16);
                for (int p = 0; p < grown; p++) {
                    for (int i = 0; i < half; i++) {
                        double angle = (double) p * frequencies[i];
                        c.setAtIndex(ValueLayout.JAVA_FLOAT, (long) p * half + i, (float) (Math.cos(angle) * magnitude));
                        s.setAtIndex(ValueLayout.JAVA_FLOAT, (long) p * half + i, (float) (Math.sin(angle) * magnitude));
                    }
                }
                context.copyToDeviceNow(newCos, c);
                context.copyToDeviceNow(newSin, s);
            } catch (RuntimeException e) { // out of memory is likely here: the KV cache has taken what it could
                context.free(newCos);
                if (newSin != 0) context.free(newSin);
                throw e;
            }
            release();
            synchronized (tables) {
                tables.cos = newCos;
                tables.sin = newSin;
            }
            positions = grown;
        }
        return new long[] {tables.cos, tables.sin};
    }

    private void release() {
        tables.free(context);
    }

    /**
     * What frees this rotary's tables, holding nothing of the rotary itself: run once the rotary has been collected
     * (see {@link ReleasedWhenCollected}).
     */
    public Runnable tablesRelease() {
        Tables owned = tables;
        CudaContext device = context;
        return () -> owned.free(device);
    }

    /** Frees the tables. */
    @Override
    public synchronized void close() {
        release();
        positions = 0;
    }
}
