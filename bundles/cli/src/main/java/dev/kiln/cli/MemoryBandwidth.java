package dev.kiln.cli;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Measures the machine's read bandwidth the way decode uses memory: {@code threads} threads each stream their part
 * of a buffer far larger than the caches, summing it with the widest vectors, as a matrix-vector product streams
 * weights. The best of several passes is reported, like STREAM.
 */
final class MemoryBandwidth {
    private static final VectorSpecies<Float> SPECIES = FloatVector.SPECIES_PREFERRED;

    private MemoryBandwidth() {}

    /** Bytes per second read by {@code threads} threads over a {@code bytes}-sized buffer, best of {@code passes}. */
    static double measure(int threads, long bytes, int passes) throws InterruptedException {
        try (Arena arena = Arena.ofShared()) {
            MemorySegment buffer = arena.allocate(bytes, 64);
            buffer.fill((byte) 1);
            long slice = bytes / threads / SPECIES.vectorByteSize() * SPECIES.vectorByteSize();
            double best = 0;
            for (int pass = 0; pass < passes; pass++) {
                CyclicBarrier start = new CyclicBarrier(threads + 1);
                float[] sink = new float[threads];
                List<Thread> workers = new ArrayList<>();
                for (int t = 0; t < threads; t++) {
                    final int id = t;
                    workers.add(Thread.ofPlatform().start(() -> {
                        await(start);
                        sink[id] = sum(buffer.asSlice(id * slice, slice));
                    }));
                }
                long t0 = System.nanoTime();
                await(start);
                for (Thread w : workers) w.join();
                long elapsed = System.nanoTime() - t0;
                if (Float.isNaN(sink[0])) throw new IllegalStateException("unreachable: keeps the sums alive");
                best = Math.max(best, slice * threads / (elapsed / 1e9));
            }
            return best;
        }
    }

    private static float sum(MemorySegment segment) {
        int step = SPECIES.vectorByteSize();
        FloatVector a = FloatVector.zero(SPECIES), b = a, c = a, d = a;
        long n = segment.byteSize();
        long i = 0;
        for (; i + 4L * step <= n; i += 4L * step) {
            a = a.add(FloatVector.fromMemorySegment(SPECIES, segment, i, ByteOrder.LITTLE_ENDIAN));
            b = b.add(FloatVector.fromMemorySegment(SPECIES, segment, i + step, ByteOrder.LITTLE_ENDIAN));
            c = c.add(FloatVector.fromMemorySegment(SPECIES, segment, i + 2L * step, ByteOrder.LITTLE_ENDIAN));
            d = d.add(FloatVector.fromMemorySegment(SPECIES, segment, i + 3L * step, ByteOrder.LITTLE_ENDIAN));
        }
        float s = a.add(b).add(c).add(d).reduceLanes(VectorOperators.ADD);
        for (; i + 4 <= n; i += 4) s += segment.get(ValueLayout.JAVA_FLOAT_UNALIGNED, i);
        return s;
    }

    private static void await(CyclicBarrier barrier) {
        try {
            barrier.await();
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }
}
