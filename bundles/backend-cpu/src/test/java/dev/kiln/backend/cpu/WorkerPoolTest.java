package dev.kiln.backend.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class WorkerPoolTest {
    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 5})
    void everyItemRunsExactlyOnce(int threads) {
        try (WorkerPool pool = new WorkerPool(threads)) {
            for (int count : new int[] {1, 2, 7, 64, 1000, 4099}) {
                for (int grain : new int[] {1, 3, 64}) {
                    AtomicIntegerArray hits = new AtomicIntegerArray(count);
                    pool.parallelFor(count, grain, (worker, from, to) -> {
                        assertTrue(worker >= 0 && worker < threads, "worker index " + worker);
                        assertTrue(from < to && (to - from <= grain || threads == 1));
                        for (int i = from; i < to; i++) hits.incrementAndGet(i);
                    });
                    for (int i = 0; i < count; i++) assertEquals(1, hits.get(i), "item " + i + " of " + count);
                }
            }
        }
    }

    @Test
    void manyConsecutiveLoopsSeeEachOthersWrites() {
        try (WorkerPool pool = new WorkerPool(2)) {
            long[] values = new long[256];
            for (int round = 0; round < 2000; round++) {
                pool.parallelFor(values.length, 8, (worker, from, to) -> {
                    for (int i = from; i < to; i++) values[i]++;
                });
            }
            for (long v : values) assertEquals(2000, v);
        }
    }

    @Test
    void workerIndicesAreExclusiveWithinALoop() {
        try (WorkerPool pool = new WorkerPool(3)) {
            AtomicInteger[] active = {new AtomicInteger(), new AtomicInteger(), new AtomicInteger()};
            AtomicInteger clashes = new AtomicInteger();
            pool.parallelFor(3000, 1, (worker, from, to) -> {
                if (active[worker].incrementAndGet() != 1) clashes.incrementAndGet();
                Thread.onSpinWait();
                active[worker].decrementAndGet();
            });
            assertEquals(0, clashes.get());
        }
    }

    @Test
    void exceptionsReachTheCallerAndThePoolStaysUsable() {
        try (WorkerPool pool = new WorkerPool(2)) {
            IllegalStateException boom = new IllegalStateException("boom");
            IllegalStateException thrown = assertThrows(IllegalStateException.class,
                    () -> pool.parallelFor(100, 1, (worker, from, to) -> {
                        if (from == 57) throw boom;
                    }));
            assertSame(boom, thrown);
            AtomicInteger sum = new AtomicInteger();
            pool.parallelFor(100, 1, (worker, from, to) -> sum.addAndGet(to - from));
            assertEquals(100, sum.get());
        }
    }

    @Test
    void nestedLoopsRunInlineOnTheCallingThread() {
        try (WorkerPool pool = new WorkerPool(2)) {
            AtomicIntegerArray hits = new AtomicIntegerArray(40 * 10);
            pool.parallelFor(40, 1, (worker, from, to) -> {
                Thread outer = Thread.currentThread();
                pool.parallelFor(10, 1, (w2, f2, t2) -> {
                    assertSame(outer, Thread.currentThread());
                    assertEquals(worker, w2);
                    for (int i = f2; i < t2; i++) hits.incrementAndGet(from * 10 + i);
                });
            });
            for (int i = 0; i < hits.length(); i++) assertEquals(1, hits.get(i));
        }
    }

    @Test
    void loopsFromSeveralThreadsAreSerialised() throws InterruptedException {
        try (WorkerPool pool = new WorkerPool(2)) {
            ConcurrentHashMap<Integer, Integer> results = new ConcurrentHashMap<>();
            Thread[] callers = new Thread[3];
            for (int c = 0; c < callers.length; c++) {
                int id = c;
                callers[c] = new Thread(() -> {
                    for (int round = 0; round < 200; round++) {
                        AtomicInteger sum = new AtomicInteger();
                        pool.parallelFor(97, 5, (worker, from, to) -> sum.addAndGet(to - from));
                        if (sum.get() != 97) results.put(id, sum.get());
                    }
                });
                callers[c].start();
            }
            for (Thread t : callers) t.join();
            assertTrue(results.isEmpty(), "wrong sums " + results);
        }
    }

    @Test
    void workersWakeUpAfterParking() throws InterruptedException {
        try (WorkerPool pool = new WorkerPool(2)) {
            pool.parallelFor(10, 1, (worker, from, to) -> {});
            Thread.sleep(20); // longer than the spin phase: the worker parks
            ConcurrentHashMap<Integer, Boolean> workers = new ConcurrentHashMap<>();
            long deadline = System.nanoTime() + 10_000_000_000L; // a lost wake-up still fails, a slow one does not
            while (workers.size() < 2 && System.nanoTime() < deadline) {
                pool.parallelFor(64, 1, (worker, from, to) -> {
                    workers.put(worker, true);
                    long end = System.nanoTime() + 20_000;
                    while (System.nanoTime() < end) Thread.onSpinWait();
                });
            }
            assertEquals(2, workers.size(), "both threads took part");
        }
    }

    @Test
    void rejectsInvalidArguments() {
        assertThrows(IllegalArgumentException.class, () -> new WorkerPool(0));
        try (WorkerPool pool = new WorkerPool(1)) {
            assertThrows(IllegalArgumentException.class, () -> pool.parallelFor(5, 0, (w, f, t) -> {}));
        }
    }
}
