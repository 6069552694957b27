package dev.kiln.backend.cuda.internal;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;

import dev.kiln.backend.cuda.bindings.CudaDriver;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.Iterator;

/**
 * Host-to-device copies of the small arrays each step needs (token ids, positions, block tables, routing rows),
 * without stalling the stream: values are staged in page-locked memory and copied asynchronously, in stream order,
 * into a device ring. The copies are held by the {@link StepRecorder} with the launches that read them, and the ring
 * rewinds to its start at every synchronisation of the step ({@link #rewind()}), so a repeated step stages its
 * arrays at the same offsets and its graph's copy nodes pick up the new values. When the host queues the next step
 * without waiting for this one, the next step starts at the other half instead ({@link #startOtherHalf()}): steps
 * then alternate between two sets of offsets.
 *
 * <p>The ring has two halves. Writing fills one half; when it is full, an event is recorded and writing moves to
 * the other half, first waiting for that half's event from its previous turn, i.e. until the copies that read its
 * staging memory have run. The device half is only overwritten by copies queued after the kernels that read its
 * old contents, so the stream's order protects it without any wait.
 *
 * <p>A slot of the ring is reserved once per turn of its half, and a half is re-entered only after the recorder has
 * issued what it held ({@link #switchHalves}, {@link #rewind}), so no node held before an upload reads its slot: the
 * recorder may run the copy at the start of its chunk ({@link StepRecorder#copyToFresh}).
 *
 * <p>An int array equal to one of the last few uploaded (the positions every layer rotates by, the batch's block
 * tables every layer attends over) is not copied again while its half has not been reused.
 */
public final class Uploads implements AutoCloseable {
    private static final long HALF = 4L << 20;
    private static final long ALIGNMENT = 256;
    private static final int REMEMBERED = 8;

    private final CudaContext context;
    private final CudaDriver driver;
    private final MemorySegment host;
    private final long device;
    private final MemorySegment[] halfDone = new MemorySegment[2];
    private final boolean[] recorded = new boolean[2];
    private final ArrayDeque<Upload> recent = new ArrayDeque<>();
    private int half;
    private long used;
    private long turn;
    /**
     * Buffers of arrays beyond half the ring: one for each such array of a step, in order ({pointer, bytes}), so that
     * two of one step never share one; the next step reuses them in the same order (an oversized upload waits for the
     * stream first, so the step before has finished with them), which keeps its pointers for graph replay.
     */
    private final java.util.List<long[]> oversized = new java.util.ArrayList<>();
    private int oversizedUsed;
    /** The thread that staged uploads since the last rewind, while only one did; {@link #mixed} once two did. */
    private Thread stager;
    private boolean mixed;

    /** An earlier upload of an int array, valid while its half was not re-entered. */
    private record Upload(int[] values, long pointer, long turn) {}

    Uploads(CudaContext context) {
        this.context = context;
        this.driver = context.driver();
        this.host = driver.allocateHost(2 * HALF);
        this.device = driver.allocate(2 * HALF);
        for (int i = 0; i < 2; i++) halfDone[i] = driver.createEvent(CudaDriver.EVENT_DISABLE_TIMING);
    }

    /** A device copy of the values, readable by work queued after this call. */
    public synchronized long ints(int[] values) {
        context.bind();
        noteStager();
        for (Iterator<Upload> it = recent.iterator(); it.hasNext(); ) {
            Upload u = it.next();
            if (turn - u.turn > 1) {
                it.remove();
            } else if (Arrays.equals(u.values, values)) {
                return u.pointer;
            }
        }
        long bytes = (long) values.length * Integer.BYTES;
        if (bytes > HALF) return oversize(MemorySegment.ofArray(values));
        long offset = reserve(bytes);
        MemorySegment.copy(values, 0, host, JAVA_INT, offset, values.length);
        context.recorder().copyToFresh(device + offset, host.asSlice(offset, bytes), bytes);
        if (recent.size() == REMEMBERED) recent.removeLast();
        recent.addFirst(new Upload(values.clone(), device + offset, turn));
        return device + offset;
    }

    /** A device copy of float values, readable by work queued after this call (not remembered). */
    public synchronized long floats(float[] values) {
        context.bind();
        noteStager();
        long bytes = (long) values.length * Float.BYTES;
        if (bytes > HALF) return oversize(MemorySegment.ofArray(values));
        long offset = reserve(bytes);
        MemorySegment.copy(values, 0, host, JAVA_FLOAT, offset, values.length);
        context.recorder().copyToFresh(device + offset, host.asSlice(offset, bytes), bytes);
        return device + offset;
    }

    /** Copies floats into device memory at {@code destination}, in stream order. */
    public synchronized void write(float[] values, long destination) {
        context.bind();
        noteStager();
        long bytes = (long) values.length * Float.BYTES;
        if (bytes == 0) return;
        if (bytes > HALF) {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment staging = arena.allocate(bytes, 16);
                MemorySegment.copy(values, 0, staging, JAVA_FLOAT, 0, values.length);
                context.copyToDeviceNow(destination, staging);
            }
            return;
        }
        long offset = reserve(bytes);
        MemorySegment.copy(values, 0, host, JAVA_FLOAT, offset, values.length);
        context.recorder().copy(destination, host.asSlice(offset, bytes), bytes);
    }

    private long reserve(long bytes) {
        long size = (bytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
        if (used + size > HALF) switchHalves();
        long offset = half * HALF + used;
        used += size;
        return offset;
    }

    /**
     * Marks the end of this half's turn on the stream (after the held copies that read its staging memory, which
     * {@link CudaContext#onStream} issues first) and starts at the other half, once its previous turn has run.
     */
    private void switchHalves() {
        context.onStream(stream -> driver.record(halfDone[half], stream));
        recorded[half] = true;
        half ^= 1;
        turn++;
        if (recorded[half]) driver.synchronizeEvent(halfDone[half]);
        used = 0;
    }

    /**
     * Starts the next step's uploads at the start of the other half while this step still runs: called when a step
     * is queued whole and the host goes on to the next one without waiting for it (see {@link TokenReadbacks}).
     * Waits for the other half's previous turn, which is normally the step before this one, and forgets earlier
     * uploads, so that steps alternate between two fixed sets of offsets and replay as graphs as steps that wait do.
     */
    synchronized void startOtherHalf() {
        context.bind();
        switchHalves();
        recent.clear();
        oversizedUsed = 0;
    }

    private void noteStager() {
        Thread current = Thread.currentThread();
        if (stager == null) stager = current;
        else if (stager != current) mixed = true;
    }

    /**
     * Starts the ring over at its first byte and forgets earlier uploads. Only valid when nothing queued or held
     * reads the ring or its staging memory: the context calls it right after waiting for the stream.
     */
    synchronized void rewind() {
        Thread current = Thread.currentThread();
        boolean othersStaged = mixed || (stager != null && stager != current);
        stager = null;
        mixed = false;
        if (othersStaged) {
            // Another thread (a draft model loading in the background, say) staged since the last rewind: the
            // pointer it was given may still wait for the launch it is about to record, and starting the ring over
            // would hand those bytes to the next upload. The ring goes on where it is (its halves' events keep that
            // safe); the next wait rewinds it. Not airtight: a thread that staged just before this call and records
            // its launch only after the next rewind would still lose its bytes; one ring per thread would close that.
            return;
        }
        half = 0;
        used = 0;
        turn += 2;
        recent.clear();
        recorded[0] = recorded[1] = false;
        oversizedUsed = 0;
    }

    /** Arrays beyond half the ring go through a buffer of their own (see {@link #oversized}), after the queued work. */
    private long oversize(MemorySegment heapValues) {
        long bytes = heapValues.byteSize();
        int index = oversizedUsed++;
        if (index == oversized.size()) oversized.add(new long[] {0, 0});
        long[] buffer = oversized.get(index);
        if (bytes > buffer[1]) {
            if (buffer[0] != 0) context.free(buffer[0]);
            buffer[0] = 0;
            buffer[1] = 0;
            buffer[0] = context.allocate(bytes);
            buffer[1] = bytes;
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment staging = arena.allocate(bytes, 16);
            MemorySegment.copy(heapValues, 0, staging, 0, bytes);
            context.copyToDeviceNow(buffer[0], staging);
        }
        return buffer[0];
    }

    @Override
    public synchronized void close() {
        for (MemorySegment e : halfDone) driver.destroyEvent(e);
        for (long[] buffer : oversized) {
            if (buffer[0] != 0) driver.free(buffer[0]);
        }
        oversized.clear();
        driver.free(device);
        driver.freeHost(host);
    }
}
