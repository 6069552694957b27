package dev.kiln.backend.cpu;

/**
 * A piece of data-parallel work over an index range, run by {@link WorkerPool#parallelFor}.
 */
@FunctionalInterface
public interface RangeTask {
    /**
     * Processes items {@code from} (inclusive) to {@code to} (exclusive).
     *
     * @param worker the index of the thread running this range, in {@code [0, pool.threads())}: no two ranges of
     *               one {@code parallelFor} run concurrently with the same index, so it can select per-thread
     *               scratch memory
     * @param from   first item
     * @param to     one past the last item
     */
    void run(int worker, int from, int to);
}
