package dev.kiln.backend.cpu;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A fixed set of threads that run data-parallel loops with little dispatch overhead.
 *
 * <p>A decode step issues a few hundred small matrix multiplications, each taking tens to hundreds of
 * microseconds, so the cost of handing work to other threads matters: the calling thread takes part in every loop,
 * workers spin for a short while after a loop before parking (so the next loop of a forward pass finds them
 * awake), and items are claimed in chunks from one shared counter, which also balances the load when another
 * process takes a core away for a while.
 *
 * <p>Loops from different threads are serialised. A loop started from inside a running loop (by one of its tasks)
 * runs inline on the calling thread, with that thread's worker index.
 */
public final class WorkerPool implements AutoCloseable {
    /** How long an idle worker spins before it parks, in nanoseconds. */
    private static final long SPIN_NANOS = TimeUnit.MICROSECONDS.toNanos(300);

    private final int threads;
    private final Worker[] workers;
    private final ReentrantLock dispatch = new ReentrantLock();
    /** The loop workers should join; replaced (never mutated) for each loop so a late worker cannot corrupt the next. */
    private volatile Job current;
    /** The thread currently dispatching a loop, to run nested loops inline. */
    private volatile Thread dispatcher;
    private volatile boolean closed;

    /**
     * Starts a pool.
     *
     * @param threads threads taking part in each loop, the calling thread included (so {@code threads - 1} are
     *                started); at least 1
     */
    public WorkerPool(int threads) {
        if (threads < 1) throw new IllegalArgumentException("threads must be at least 1, got " + threads);
        this.threads = threads;
        this.workers = new Worker[threads - 1];
        for (int i = 0; i < workers.length; i++) {
            workers[i] = new Worker(i + 1);
            workers[i].start();
        }
    }

    /** Threads taking part in each loop, the caller included. */
    public int threads() {
        return threads;
    }

    /**
     * Runs {@code task} over items {@code [0, count)}, split into chunks of about {@code count / (4 · threads)}
     * items, and returns when all have run.
     */
    public void parallelFor(int count, RangeTask task) {
        parallelFor(count, Math.max(1, (count + 4 * threads - 1) / (4 * threads)), task);
    }

    /**
     * Runs {@code task} over items {@code [0, count)} in chunks of {@code grain} items (the last may be shorter),
     * on all threads of the pool, and returns when all have run. Where the loop runs on one thread only (a pool of
     * one thread, {@code count <= grain}, or a nested loop) the task gets the whole range in one call. An exception
     * thrown by a task is rethrown here after the other chunks finished.
     */
    public void parallelFor(int count, int grain, RangeTask task) {
        if (count <= 0) return;
        if (grain < 1) throw new IllegalArgumentException("grain must be at least 1, got " + grain);
        Thread self = Thread.currentThread();
        if (self instanceof Worker w && w.pool() == this) {
            task.run(w.index, 0, count);
            return;
        }
        if (self == dispatcher) {
            task.run(0, 0, count);
            return;
        }
        if (threads == 1 || count <= grain) {
            dispatch.lock();
            try {
                dispatcher = self;
                task.run(0, 0, count);
            } finally {
                dispatcher = null;
                dispatch.unlock();
            }
            return;
        }
        if (closed) throw new IllegalStateException("worker pool is closed");
        dispatch.lock();
        try {
            dispatcher = self;
            Job job = new Job(task, count, grain);
            current = job;
            for (Worker w : workers) {
                if (w.parked) LockSupport.unpark(w);
            }
            job.work(0);
            job.awaitCompletion();
            Throwable failure = job.failure;
            if (failure != null) {
                if (failure instanceof RuntimeException e) throw e;
                if (failure instanceof Error e) throw e;
                throw new IllegalStateException(failure);
            }
        } finally {
            current = null;
            dispatcher = null;
            dispatch.unlock();
        }
    }

    /** Stops the workers. Loops started afterwards fail. */
    @Override
    public void close() {
        closed = true;
        for (Worker w : workers) LockSupport.unpark(w);
        for (Worker w : workers) {
            try {
                w.join(TimeUnit.SECONDS.toMillis(5));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    /** One loop: its task and the counters shared by the threads running it. */
    private static final class Job {
        final RangeTask task;
        final int count;
        final int grain;
        final AtomicInteger next = new AtomicInteger();
        final AtomicInteger done = new AtomicInteger();
        volatile Throwable failure;

        Job(RangeTask task, int count, int grain) {
            this.task = task;
            this.count = count;
            this.grain = grain;
        }

        void work(int worker) {
            int from;
            while ((from = next.getAndAdd(grain)) < count) {
                int to = Math.min(count, from + grain);
                try {
                    if (failure == null) task.run(worker, from, to);
                } catch (Throwable t) {
                    failure = t;
                } finally {
                    done.addAndGet(to - from);
                }
            }
        }

        void awaitCompletion() {
            int spins = 0;
            while (done.get() < count) {
                // Yield now and then: on a shared machine the worker we wait for may need our core.
                if (++spins % 256 == 0) Thread.yield();
                else Thread.onSpinWait();
            }
        }
    }

    private final class Worker extends Thread {
        final int index;
        volatile boolean parked;

        Worker(int index) {
            super("kiln-cpu-worker-" + index);
            this.index = index;
            setDaemon(true);
        }

        WorkerPool pool() {
            return WorkerPool.this;
        }

        @Override
        public void run() {
            Job joined = null;
            while (!closed) {
                Job job = current;
                if (job != null && job != joined) {
                    joined = job;
                    job.work(index);
                } else {
                    idle(job);
                }
            }
        }

        /** Spins for a while until {@link #current} changes from {@code last}, then parks until it does. */
        private void idle(Job last) {
            long deadline = System.nanoTime() + SPIN_NANOS;
            int spins = 0;
            while (current == last && !closed) {
                Thread.onSpinWait();
                if ((++spins & 63) == 0 && System.nanoTime() > deadline) {
                    parked = true;
                    // Re-check after announcing: a dispatcher that published before seeing parked=true did not unpark us.
                    if (current == last && !closed) LockSupport.park(this);
                    parked = false;
                    deadline = System.nanoTime() + SPIN_NANOS;
                }
            }
        }
    }
}
