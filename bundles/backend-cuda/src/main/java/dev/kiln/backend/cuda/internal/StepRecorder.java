package dev.kiln.backend.cuda.internal;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import dev.kiln.backend.cuda.bindings.CudaDriver;
import dev.kiln.backend.cuda.bindings.CudaException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Holds back the stream's kernel launches and host-to-device copies, then issues them in chunks: a chunk seen
 * before is replayed as one CUDA graph, a new one is launched node by node.
 *
 * <p>Why: a decode step of a 1.5B-parameter model is about 500 small launches, and issued one by one from Java
 * each costs a few microseconds of host time, as much as the GPU spends on it. From one decode step to the next
 * the launches repeat exactly while the batch shape stays the same: activations live in the model's fixed
 * workspace and the per-step arrays (tokens, positions, block tables) are staged at the same offsets of the upload
 * ring, which rewinds at every synchronisation. Steps then differ only in the contents of the page-locked staging
 * memory, which a graph's copy nodes read when the graph runs. A chunk's identity is therefore the exact list of
 * its launches (function, grid, every argument) and copies (addresses and sizes): equal lists, equal work.
 *
 * <p>Chunks close every {@link #CHUNK} nodes ({@link #FIRST_CHUNK} for the first after a flush) so the GPU starts
 * while Java records the rest of the step (a boundary between chunks is a full wait, where a kernel cannot start
 * early), and at every synchronisation point (anything that uses the stream directly calls {@link #flush()} first). A chunk is
 * captured at its second sighting, so one-off shapes (a prefill of some length) never pay for a capture; the most
 * recently used graphs are kept, at most {@value #GRAPHS}.
 *
 * <p>Overlapped decode steps take larger chunks: while a step whose tokens the host has not read yet is queued
 * ({@link #stepQueuedAhead}), the GPU is busy with it and gains nothing from an early start of the next one, so the
 * first chunk after a flush is {@link #OVERLAPPED_CHUNK} nodes, a whole decode step of a small model in one graph. The
 * choice follows from what the serving loop does, not from timing, so chunk boundaries still repeat from step to step.
 *
 * <p>Callers may rewrite the last held launch ({@link #lastLaunch()}, {@link #replaceLast}) to fuse it with the
 * next one. All methods are synchronised: the backend is called from one thread per forward, but weights may be
 * loaded or caches copied from others.
 */
public final class StepRecorder implements AutoCloseable {
    /** Chunks shorter than this run node by node: a graph would not pay for its launch. */
    static final int MIN_GRAPH_NODES = 8;
    /**
     * Nodes per chunk (system property {@code kiln.cuda.graphChunk}): large enough that a graph launch costs little per
     * node, small enough to overlap. Each chunk boundary is a full wait: the first kernel of a chunk cannot start early.
     */
    static final int CHUNK = Math.max(MIN_GRAPH_NODES, Integer.getInteger("kiln.cuda.graphChunk", 128));
    /**
     * The first chunk after a synchronisation is shorter (system property {@code kiln.cuda.graphFirstChunk}): the GPU,
     * idle since then, starts sooner.
     */
    static final int FIRST_CHUNK = Math.max(1, Integer.getInteger("kiln.cuda.graphFirstChunk", 24));
    /**
     * The first chunk after a synchronisation while a step queued ahead still runs (system property
     * {@code kiln.cuda.graphOverlappedChunk}). Measured on an H100 (1.5B shape, bf16, overlapped steps), one graph a
     * step against chunks of 24 and 128: batch 8 2.09 -> 2.05 ms a step, batch 32 3.19-3.34 -> 2.94-2.95, batch 1 and
     * 2 unchanged.
     */
    static final int OVERLAPPED_CHUNK = Math.max(MIN_GRAPH_NODES, Integer.getInteger("kiln.cuda.graphOverlappedChunk", 512));
    /** Executable graphs kept. */
    static final int GRAPHS = 256;
    private static final int MAX_ARGUMENTS = LaunchArguments.MAX_ARGUMENTS;
    private static final int SIGHTINGS = 4096;
    private static final long KIND_LAUNCH = 1, KIND_COPY = 2, KIND_CALL = 3;
    private static final Logger LOG = LoggerFactory.getLogger(StepRecorder.class);
    /**
     * Logs every chunk captured into a graph, a line per node (system property {@code kiln.cuda.logCapturedChunks}):
     * what a step launches, with the shapes, for comparing it with a hand-built step.
     */
    private static final boolean LOG_CAPTURED = Boolean.getBoolean("kiln.cuda.logCapturedChunks");

    /**
     * A kernel launch: the function, its launch shape, each argument's 8-byte slot, whether it may start before the
     * kernel ahead of it finishes (programmatic dependent launch; the kernel then waits for it on the device), and the
     * blocks along y of its thread block clusters (1: no clusters).
     */
    public record Launch(MemorySegment function, String name, int gridX, int gridY, int block, int sharedBytes, long[] arguments,
                         boolean programmatic, int clusterY) {
        /**
         * Checks the shape the driver would refuse, here in the caller's thread rather than when a held chunk is
         * issued, possibly by another thread's flush that would then lose the rest of the chunk.
         */
        public Launch {
            if (gridX < 1 || gridY < 1 || gridY > 65_535 || block < 1 || block > 1024 || sharedBytes < 0 || clusterY < 1
                    || gridY % clusterY != 0) {
                throw new IllegalArgumentException(name + ": no launch of a grid of " + gridX + " x " + gridY
                        + " blocks of " + block + " threads, " + sharedBytes + " bytes of shared memory, clusters of "
                        + clusterY);
            }
        }

        public Launch(MemorySegment function, String name, int gridX, int gridY, int block, int sharedBytes,
                      long[] arguments, boolean programmatic) {
            this(function, name, gridX, gridY, block, sharedBytes, arguments, programmatic, 1);
        }

        /** The argument in slot i (a pointer or a 64-bit integer; narrower values sit in the low bytes). */
        public long argument(int i) {
            return arguments[i];
        }

        /** The same launch with one argument replaced. */
        public Launch with(int slot, long value) {
            long[] a = arguments.clone();
            a[slot] = value;
            return new Launch(function, name, gridX, gridY, block, sharedBytes, a, programmatic, clusterY);
        }
    }

    /**
     * An asynchronous copy from page-locked host memory into device memory. {@code fresh}: its destination was
     * reserved since the chunk began, so no node held before it reads or writes there.
     */
    private record Copy(long destination, MemorySegment source, long bytes, boolean fresh) {}

    /**
     * A library call on the stream (a cuBLAS GEMM) whose work is a function of its parameters alone: the parameters
     * are its identity in a chunk's signature, the action issues it (captured into a graph like any launch).
     */
    private record Call(String name, long[] parameters, Runnable action) {}

    /** A chunk's identity: its nodes flattened into numbers. */
    private record Signature(long[] values, int hash) {
        static Signature of(long[] values) {
            return new Signature(values, Arrays.hashCode(values));
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Signature s && s.hash == hash && Arrays.equals(s.values, values);
        }

        @Override
        public int hashCode() {
            return hash;
        }
    }

    /**
     * One issued chunk, timed on the GPU while profiling is on: its nodes, whether it ran as a graph, the GPU time
     * from its first node's start to its last node's end, and how long the stream sat idle before it (the host
     * was still recording it; for the first chunk of a step, the host work between steps).
     */
    public record ChunkTiming(int nodes, boolean replayed, float gpuMillis, float idleBeforeMillis) {}

    /** What the recorder did since it was made, for benchmarks and the console. */
    public record Stats(long chunks, long graphReplays, long graphsCaptured, long nodesLaunchedOneByOne,
                        long nodesReplayed, long fusions, long invalidations, int graphsHeld, boolean graphsEnabled) {}

    private final CudaDriver driver;
    private final MemorySegment stream;
    private final List<Object> pending = new ArrayList<>();
    private final Map<Signature, Integer> sightings = new HashMap<>();
    private final LinkedHashMap<Signature, MemorySegment> graphs = new LinkedHashMap<>(64, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<Signature, MemorySegment> eldest) {
            if (size() <= GRAPHS) return false;
            destroy(eldest.getValue()); // an executable graph still running is freed when it completes
            return true;
        }
    };
    private final MemorySegment values = Arena.global().allocate(8L * MAX_ARGUMENTS, 8);
    private final MemorySegment pointers = Arena.global().allocate(ADDRESS, MAX_ARGUMENTS);
    private boolean graphsEnabled;
    private final boolean programmaticLaunches;
    private final boolean clusters;
    /**
     * Nodes at which the held chunk closes: FIRST_CHUNK after a flush, CHUNK after that, so chunk boundaries repeat
     * exactly from step to step.
     */
    private int chunkLimit = FIRST_CHUNK;
    /** Whether no node was held since the last flush: the next one decides the first chunk's size. */
    private boolean afterFlush = true;
    /** Steps queued whose chosen tokens the host has not read yet (unsynchronised: the readbacks update it). */
    private final AtomicInteger stepsAhead = new AtomicInteger();
    /** Whether library calls may be captured; turned off (calls then end a chunk) if one ever fails to capture. */
    private boolean callsCapturable = true;
    /** Timing events around each issued chunk while profiling: {start, end, nodes, replayed}. */
    private final List<Object[]> timed = new ArrayList<>();
    private final ArrayDeque<MemorySegment> spareEvents = new ArrayDeque<>();
    private MemorySegment previousEnd;
    private boolean profiling;
    private long chunks, graphReplays, graphsCaptured, nodesLaunchedOneByOne, nodesReplayed, fusions, invalidations;
    private long marks;

    /**
     * @param graphs whether repeated chunks are replayed as CUDA graphs (else every node is launched one by one)
     */
    StepRecorder(CudaDriver driver, MemorySegment stream, boolean graphs) {
        this(driver, stream, graphs, false);
    }

    /**
     * @param graphs       whether repeated chunks are replayed as CUDA graphs (else every node is launched one by one)
     * @param programmatic whether launches asked for as programmatic are made so (needs {@code cuLaunchKernelEx};
     *                     only compute capability 9.0 and later acts on it)
     */
    StepRecorder(CudaDriver driver, MemorySegment stream, boolean graphs, boolean programmatic) {
        this(driver, stream, graphs, programmatic, false);
    }

    /**
     * @param clusters whether the device runs thread block clusters (compute capability 9.0 and later); launches
     *                 then may ask for them where the driver has {@code cuLaunchKernelEx}
     */
    StepRecorder(CudaDriver driver, MemorySegment stream, boolean graphs, boolean programmatic, boolean clusters) {
        this.driver = driver;
        this.stream = stream;
        this.graphsEnabled = graphs;
        this.programmaticLaunches = programmatic && driver.supportsProgrammaticLaunch();
        this.clusters = clusters && driver.supportsProgrammaticLaunch();
        for (int i = 0; i < MAX_ARGUMENTS; i++) pointers.setAtIndex(ADDRESS, i, values.asSlice(8L * i, 8));
    }

    /** Holds a kernel launch; {@code arguments} holds {@code count} 8-byte slots (copied). */
    public void launch(MemorySegment function, String name, int gridX, int gridY, int block, int sharedBytes,
                       MemorySegment arguments, int count) {
        launch(function, name, gridX, gridY, block, sharedBytes, arguments, count, false);
    }

    /**
     * Holds a kernel launch; {@code arguments} holds {@code count} 8-byte slots (copied). A programmatic launch may
     * start before the kernel ahead of it has finished, where the device and driver allow it: only for kernels that
     * wait for their predecessor on the device before touching memory it uses.
     */
    public synchronized void launch(MemorySegment function, String name, int gridX, int gridY, int block, int sharedBytes,
                                    MemorySegment arguments, int count, boolean programmatic) {
        launch(function, name, gridX, gridY, block, sharedBytes, arguments, count, programmatic, 1);
    }

    /**
     * Holds a kernel launch whose grid's blocks run in thread block clusters of {@code clusterY} along y (see
     * {@link #clusters()}; 1 for none), programmatic as {@link #launch(MemorySegment, String, int, int, int, int,
     * MemorySegment, int, boolean)}.
     */
    public synchronized void launch(MemorySegment function, String name, int gridX, int gridY, int block, int sharedBytes,
                                    MemorySegment arguments, int count, boolean programmatic, int clusterY) {
        if (count > MAX_ARGUMENTS) throw new IllegalArgumentException(name + ": " + count + " arguments");
        if (clusterY > 1 && (!clusters || gridY % clusterY != 0)) {
            throw new IllegalArgumentException(name + ": clusters of " + clusterY + " over a grid of " + gridY
                    + (clusters ? "" : " (no clusters on this device)"));
        }
        long[] slots = new long[count];
        MemorySegment.copy(arguments, JAVA_LONG, 0, slots, 0, count);
        hold(new Launch(function, name, gridX, gridY, block, sharedBytes, slots, programmatic && programmaticLaunches,
                Math.max(1, clusterY)));
    }

    /**
     * Whether launches may run in thread block clusters: the driver has {@code cuLaunchKernelEx} and the device is of
     * compute capability 9.0 or later.
     */
    public synchronized boolean clusters() {
        return clusters;
    }

    /** Whether repeated chunks are replayed as CUDA graphs (false when configured so or after a capture failed). */
    public synchronized boolean graphsEnabled() {
        return graphsEnabled;
    }

    /** Whether programmatic launches are made as such (else as plain launches). */
    public synchronized boolean programmaticLaunches() {
        return programmaticLaunches;
    }

    /** Holds an asynchronous copy of page-locked host bytes (read when the copy runs) into device memory. */
    public synchronized void copy(long destination, MemorySegment source, long bytes) {
        hold(new Copy(destination, source, bytes, false));
    }

    /**
     * Holds a copy as {@link #copy} does, into device memory that no node held so far uses (a slot just reserved in
     * the upload ring): it may therefore run before every node held so far, and the
     * held chunk starts with it. Why: a copy node between two kernels is a full wait inside a graph, where the kernel
     * after it cannot start early, and it splits the launches that fuse with the one before them (a rotation that the
     * attention kernel takes in, say). At the chunk's start, copies that follow each other in host and device memory
     * are merged into one.
     */
    public synchronized void copyToFresh(long destination, MemorySegment source, long bytes) {
        hold(new Copy(destination, source, bytes, true));
    }

    /**
     * Holds a library call whose work depends only on {@code parameters} (every pointer and size it uses): it joins
     * the chunk's graph. Where calls cannot be captured it ends the chunk and runs at once.
     */
    public synchronized void call(String name, long[] parameters, Runnable action) {
        if (!graphsEnabled || !callsCapturable) {
            flush();
            action.run();
            return;
        }
        hold(new Call(name, parameters.clone(), action));
    }

    /** The last held node if it is a launch not yet issued, else null. */
    public synchronized Launch lastLaunch() {
        return pending.isEmpty() || !(pending.getLast() instanceof Launch l) ? null : l;
    }

    /**
     * Replaces the last held launch by one that does its work and more, if it is still {@code expected} (the one
     * {@link #lastLaunch()} returned): another thread may have held a node in between, or the chunk may have been
     * issued. Returns false then, and the caller launches its work on its own.
     */
    public synchronized boolean replaceLast(Launch expected, Launch fused) {
        if (pending.isEmpty() || pending.getLast() != expected) return false;
        pending.set(pending.size() - 1, fused);
        fusions++;
        return true;
    }

    /**
     * Nodes held plus explicit {@link #flush}es so far (a fusion replaces a node and adds none): equal marks mean
     * nothing else was queued and the stream was not used directly in between, which is how a caller knows that its
     * own last launches are still the latest work.
     */
    public synchronized long mark() {
        return marks;
    }

    /**
     * A step's chosen tokens are on their way back and the host may queue the next step before reading them
     * ({@link TokenReadbacks}); {@link #stepAwaited} follows once it has read them.
     */
    public void stepQueuedAhead() {
        stepsAhead.incrementAndGet();
    }

    /** The host has read the tokens of a step announced by {@link #stepQueuedAhead}. */
    public void stepAwaited() {
        stepsAhead.decrementAndGet();
    }

    /** Nodes at which the held chunk will close (for tests). */
    synchronized int chunkLimit() {
        return chunkLimit;
    }

    private void hold(Object node) {
        marks++;
        if (afterFlush) {
            afterFlush = false;
            if (stepsAhead.get() > 0) chunkLimit = Math.max(chunkLimit, OVERLAPPED_CHUNK);
        }
        if (node instanceof Copy c && c.fresh) {
            holdAtStart(c);
            return;
        }
        pending.add(node);
        closeIfFull();
    }

    /** Largest gap of unused bytes between two fresh copies that are still merged into one (the ring's alignment). */
    private static final long MERGED_GAP = 256;

    /**
     * Holds a fresh copy after the fresh copies at the chunk's start, merged into the last of them when it continues
     * it in both host and device memory (at most {@link #MERGED_GAP} unused bytes apart: copying those too is harmless,
     * as no node reads them).
     */
    private void holdAtStart(Copy c) {
        int leading = 0;
        while (leading < pending.size() && pending.get(leading) instanceof Copy p && p.fresh) leading++;
        if (leading > 0) {
            Copy p = (Copy) pending.get(leading - 1);
            long gap = c.destination - (p.destination + p.bytes);
            if (gap >= 0 && gap <= MERGED_GAP && c.source.address() - p.source.address() == c.destination - p.destination) {
                long bytes = c.destination + c.bytes - p.destination;
                pending.set(leading - 1, new Copy(p.destination, p.source.reinterpret(bytes), bytes, true));
                return;
            }
        }
        pending.add(leading, c);
        closeIfFull();
    }

    private void closeIfFull() {
        if (pending.size() >= chunkLimit) {
            issueChunk();
            chunkLimit = CHUNK;
        }
    }

    /** Issues everything held, in order, on the stream. Call before any direct use of the stream. */
    public synchronized void flush() {
        marks++;
        issueChunk();
        chunkLimit = FIRST_CHUNK;
        afterFlush = true;
    }

    /** Issues the held chunk: as a graph when seen before, node by node otherwise. */
    private void issueChunk() {
        if (pending.isEmpty()) return;
        chunks++;
        MemorySegment start = profiling ? timingEvent() : null;
        long replaysBefore = graphReplays;
        int nodes = pending.size();
        if (start != null) driver.record(start, stream);
        try {
            if (!graphsEnabled || pending.size() < MIN_GRAPH_NODES) {
                launchOneByOne();
                return;
            }
            Signature signature = signature();
            MemorySegment exec = graphs.get(signature);
            if (exec == null && sightings.merge(signature, 1, Integer::sum) >= 2) {
                exec = capture();
                if (exec != null) {
                    sightings.remove(signature);
                    graphs.put(signature, exec);
                }
            }
            if (sightings.size() > SIGHTINGS) sightings.clear();
            if (exec == null) {
                launchOneByOne();
            } else {
                driver.launchGraph(exec, stream);
                graphReplays++;
                nodesReplayed += pending.size();
            }
        } finally {
            pending.clear();
            if (start != null) {
                MemorySegment end = timingEvent();
                driver.record(end, stream);
                timed.add(new Object[] {start, end, nodes, graphReplays > replaysBefore});
            }
        }
    }

    /**
     * Times every chunk issued from now on with a pair of GPU events ({@link #takeProfile()} reads them), or stops.
     * For benchmarks: the events cost a little GPU time of their own.
     */
    public synchronized void profile(boolean on) {
        profiling = on;
        if (!on) takeProfile();
    }

    /**
     * The chunks issued since the last call, timed: issues what is held and waits for the stream first. The idle
     * time before the first chunk counts from the end of the last chunk of the previous call.
     */
    public synchronized List<ChunkTiming> takeProfile() {
        flush();
        List<ChunkTiming> result = new ArrayList<>(timed.size());
        if (timed.isEmpty()) return result;
        driver.synchronizeEvent((MemorySegment) timed.getLast()[1]);
        for (Object[] t : timed) {
            MemorySegment start = (MemorySegment) t[0], end = (MemorySegment) t[1];
            float idle = previousEnd == null ? 0f : driver.elapsedMillis(previousEnd, start);
            result.add(new ChunkTiming((Integer) t[2], (Boolean) t[3], driver.elapsedMillis(start, end), idle));
            spareEvents.add(start);
            if (previousEnd != null) spareEvents.add(previousEnd);
            previousEnd = end;
        }
        timed.clear();
        return result;
    }

    private MemorySegment timingEvent() {
        MemorySegment e = spareEvents.poll();
        return e != null ? e : driver.createEvent(CudaDriver.EVENT_DEFAULT);
    }

    private void launchOneByOne() {
        issueAll();
        nodesLaunchedOneByOne += pending.size();
    }

    /**
     * Issues the held nodes in order. A programmatic launch is made as such only right after another kernel launch
     * of the same chunk: the device-side wait covers kernels only, so after a copy (whose data the kernel reads), a
     * library call or at a chunk's start the launch waits for everything before it as usual.
     */
    private void issueAll() {
        Object previous = null;
        for (Object node : pending) {
            issue(node, previous instanceof Launch);
            previous = node;
        }
    }

    private void issue(Object node, boolean afterLaunch) {
        switch (node) {
            case Launch l -> {
                MemorySegment.copy(l.arguments, 0, values, JAVA_LONG, 0, l.arguments.length);
                boolean programmatic = l.programmatic && afterLaunch;
                if (programmatic || l.clusterY > 1) {
                    driver.launchExtended(l.function, l.gridX, l.gridY, 1, l.block, 1, 1, l.sharedBytes, stream, pointers,
                            l.name, programmatic, l.clusterY);
                } else {
                    driver.launch(l.function, l.gridX, l.gridY, 1, l.block, 1, 1, l.sharedBytes, stream, pointers, l.name);
                }
            }
            case Copy c -> driver.copyToDeviceAsync(c.destination, c.source, c.bytes, stream);
            case Call c -> c.action.run();
            default -> throw new IllegalStateException(node.toString());
        }
    }

    /** Captures the held nodes into an executable graph; on a capture failure, turns graphs off and returns null. */
    private MemorySegment capture() {
        driver.beginCapture(stream);
        MemorySegment graph;
        try {
            issueAll();
        } catch (RuntimeException e) {
            endQuietly();
            throw e;
        }
        try {
            graph = driver.endCapture(stream);
        } catch (CudaException e) {
            if (pending.stream().anyMatch(n -> n instanceof Call)) {
                // A library call that cannot be captured: keep graphs, let such calls end their chunks from now on.
                callsCapturable = false;
                LOG.warn("a library call could not be captured into a CUDA graph; such calls now end their chunk: {}",
                        e.getMessage());
                return null;
            }
            disable(e);
            return null;
        }
        try {
            MemorySegment exec = driver.instantiate(graph);
            graphsCaptured++;
            if (LOG_CAPTURED) LOG.info("captured chunk {} of {} nodes:\n{}", graphsCaptured, pending.size(), describe(pending));
            return exec;
        } catch (CudaException e) {
            disable(e);
            return null;
        } finally {
            driver.destroyGraph(graph);
        }
    }

    /** A line per node: a launch's name and shape, a copy's size, a call's name. */
    static String describe(List<Object> nodes) {
        StringBuilder text = new StringBuilder();
        for (Object node : nodes) text.append("  ").append(describe(node)).append(System.lineSeparator());
        return text.toString();
    }

    private static String describe(Object node) {
        return switch (node) {
            case Launch l -> String.format("%s grid %dx%d block %d shared %d%s%s", l.name, l.gridX, l.gridY, l.block,
                    l.sharedBytes, l.clusterY > 1 ? " cluster " + l.clusterY : "", l.programmatic ? "" : " (not programmatic)");
            case Copy c -> String.format("copy of %d bytes to the device%s", c.bytes, c.fresh ? " (fresh)" : "");
            case Call c -> "call " + c.name;
            default -> node.toString();
        };
    }

    /** The held nodes, a line each as {@link #describe(List)} writes them (for tests). */
    synchronized List<String> heldNodes() {
        return pending.stream().map(StepRecorder::describe).toList();
    }

    private void endQuietly() {
        try {
            MemorySegment graph = driver.endCapture(stream);
            if (!graph.equals(MemorySegment.NULL)) driver.destroyGraph(graph);
        } catch (CudaException ignored) {
            // the capture was invalidated by the failure being reported
        }
    }

    private void disable(CudaException e) {
        graphsEnabled = false;
        LOG.warn("CUDA graph capture failed, launching kernels one by one from now on: {}", e.getMessage());
    }

    private Signature signature() {
        int length = 0;
        for (Object node : pending) {
            length += switch (node) {
                case Launch l -> 7 + l.arguments.length;
                case Call c -> 3 + c.parameters.length;
                default -> 4;
            };
        }
        long[] s = new long[length];
        int i = 0;
        for (Object node : pending) {
            if (node instanceof Launch l) {
                s[i++] = KIND_LAUNCH;
                s[i++] = l.function.address();
                s[i++] = ((long) l.gridX << 32) | (l.gridY & 0xffffffffL);
                s[i++] = ((long) l.block << 32) | (l.sharedBytes & 0xffffffffL);
                s[i++] = (l.programmatic ? 1 : 0) | ((long) l.clusterY << 1);
                s[i++] = l.arguments.length;
                System.arraycopy(l.arguments, 0, s, i, l.arguments.length);
                i += l.arguments.length;
                s[i++] = -1;
            } else if (node instanceof Copy c) {
                s[i++] = KIND_COPY;
                s[i++] = c.destination;
                s[i++] = c.source.address();
                s[i++] = c.bytes;
            } else if (node instanceof Call c) {
                s[i++] = KIND_CALL;
                s[i++] = c.name.hashCode();
                s[i++] = c.parameters.length;
                System.arraycopy(c.parameters, 0, s, i, c.parameters.length);
                i += c.parameters.length;
            }
        }
        return Signature.of(s);
    }

    /**
     * Forgets every graph: called when device memory is freed. A graph's copy nodes are bound to the allocations
     * they were captured against; replaying one after its memory was freed is undefined even when a new allocation
     * got the same address (observed: skipped copies, CUDA_ERROR_INVALID_VALUE, crashes inside cuGraphLaunch).
     * Frees are rare in steady decoding (a grown scratch buffer, a closed model), so the cost is a few recaptures.
     */
    public synchronized void forgetGraphs() {
        flush();
        for (MemorySegment exec : graphs.values()) destroy(exec);
        if (!graphs.isEmpty()) invalidations++;
        graphs.clear();
        sightings.clear();
    }

    /** Counters since the recorder was made. */
    public synchronized Stats stats() {
        return new Stats(chunks, graphReplays, graphsCaptured, nodesLaunchedOneByOne, nodesReplayed, fusions, invalidations,
                graphs.size(), graphsEnabled);
    }

    private void destroy(MemorySegment exec) {
        try {
            driver.destroyGraphExec(exec);
        } catch (CudaException e) {
            LOG.debug("cannot destroy a CUDA graph: {}", e.getMessage());
        }
    }

    /** Issues what is held and destroys the graphs. */
    @Override
    public synchronized void close() {
        flush();
        if (!timed.isEmpty() || previousEnd != null) {
            takeProfile();
            spareEvents.add(previousEnd);
            previousEnd = null;
        }
        for (MemorySegment e : spareEvents) driver.destroyEvent(e);
        spareEvents.clear();
        for (MemorySegment exec : graphs.values()) destroy(exec);
        graphs.clear();
        sightings.clear();
    }
}
