package dev.kiln.backend.cuda.internal;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A kernel's argument list, each argument's value in an 8-byte slot (the layout {@code cuLaunchKernel}'s parameter
 * pointers address), narrower values zero-extended so that equal launches compare equal slot by slot. The recorder
 * copies the slots when it takes the launch, so one list per thread serves every launch of a kernel module.
 */
final class LaunchArguments {
    /** The most arguments a kernel of the project takes (the split attention kernel's 28, with room). */
    static final int MAX_ARGUMENTS = 32;

    private final CudaContext context;
    private final MemorySegment values = Arena.global().allocate(8L * MAX_ARGUMENTS, 8);
    private int count;

    LaunchArguments(CudaContext context) {
        this.context = context;
    }

    /** Empties the list for the next launch (and makes the context current on this thread). */
    LaunchArguments reset() {
        context.bind();
        count = 0;
        return this;
    }

    LaunchArguments ptr(long pointer) {
        return slot(pointer);
    }

    LaunchArguments i64(long value) {
        return slot(value);
    }

    LaunchArguments i32(int value) {
        return slot(value & 0xffffffffL);
    }

    LaunchArguments f32(float value) {
        return slot(Float.floatToRawIntBits(value) & 0xffffffffL);
    }

    /** A raw 8-byte slot, as read back from a held launch. */
    LaunchArguments slot(long value) {
        if (count == MAX_ARGUMENTS) throw new IllegalStateException("more than " + MAX_ARGUMENTS + " kernel arguments");
        values.set(JAVA_LONG, 8L * count++, value);
        return this;
    }

    /** {@link #launch(MemorySegment, String, int, int, int, int)} without dynamic shared memory. */
    void launch(MemorySegment function, String name, int gridX, int gridY, int block) {
        launch(function, name, gridX, gridY, block, 0);
    }

    /** Holds the launch as a programmatic one: every kernel of the project waits for its predecessor on the device. */
    void launch(MemorySegment function, String name, int gridX, int gridY, int block, int sharedBytes) {
        launch(function, name, gridX, gridY, block, sharedBytes, 1);
    }

    /** The same, the grid's blocks in thread block clusters of {@code clusterY} along y (1: none). */
    void launch(MemorySegment function, String name, int gridX, int gridY, int block, int sharedBytes, int clusterY) {
        context.recorder().launch(function, name, gridX, gridY, block, sharedBytes, values, count, true, clusterY);
    }

    /**
     * Takes the place of the recorder's last held launch, {@code expected} (a fusion of it with this one); false when
     * that is no longer the last held node, and the caller then launches its own work.
     */
    boolean replace(StepRecorder.Launch expected, MemorySegment function, String name, int gridX, int gridY, int block,
                    int sharedBytes) {
        return replace(expected, function, name, gridX, gridY, block, sharedBytes, 1);
    }

    /** The same, the grid's blocks in thread block clusters of {@code clusterY} along y (1: none). */
    boolean replace(StepRecorder.Launch expected, MemorySegment function, String name, int gridX, int gridY, int block,
                    int sharedBytes, int clusterY) {
        long[] slots = new long[count];
        MemorySegment.copy(values, JAVA_LONG, 0, slots, 0, count);
        return context.recorder().replaceLast(expected, new StepRecorder.Launch(function, name, gridX, gridY, block,
                sharedBytes, slots, context.recorder().programmaticLaunches(), clusterY));
    }
}
