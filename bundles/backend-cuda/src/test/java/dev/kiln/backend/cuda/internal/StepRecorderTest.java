package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * What the recorder holds before it issues anything (no GPU needed: nothing here reaches the driver): the last held
 * launch, and fusion replacing it only while it is still the last held node, so that a node held by another thread in
 * between is never overwritten.
 */
class StepRecorderTest {
    private final StepRecorder recorder = new StepRecorder(null, MemorySegment.NULL, true);
    private final MemorySegment function = Arena.global().allocate(8);
    private final MemorySegment arguments = Arena.global().allocate(8L * 4, 8);

    private StepRecorder.Launch hold(long firstArgument) {
        arguments.set(ValueLayout.JAVA_LONG, 0, firstArgument);
        recorder.launch(function, "k", 1, 1, 32, 0, arguments, 4);
        return recorder.lastLaunch();
    }

    @Test
    void aShapeTheDriverWouldRefuseIsRefusedWhenHeldAndNothingIsHeld() {
        int[][] shapes = {{0, 1, 32}, {1, 0, 32}, {1, 65_536, 32}, {1, 1, 0}, {1, 1, 1025}};
        for (int[] shape : shapes) {
            assertThrows(IllegalArgumentException.class,
                    () -> recorder.launch(function, "k", shape[0], shape[1], shape[2], 0, arguments, 4));
        }
        assertNull(recorder.lastLaunch());
        StepRecorder.Launch a = hold(1);
        assertThrows(IllegalArgumentException.class, () -> recorder.replaceLast(a, new StepRecorder.Launch(a.function(),
                a.name(), 1, 3, 32, 0, a.arguments(), true, 2)), "a grid of 3 rows in clusters of 2");
        assertSame(a, recorder.lastLaunch());
    }

    @Test
    void aStepQueuedAheadOfTheHostMakesTheFirstChunkOfTheNextOneWholeAndOnlyThen() {
        hold(1);
        assertEquals(StepRecorder.FIRST_CHUNK, recorder.chunkLimit(), "nothing runs ahead: the GPU should start soon");

        StepRecorder overlapped = new StepRecorder(null, MemorySegment.NULL, true);
        overlapped.stepQueuedAhead();
        overlapped.launch(function, "k", 1, 1, 32, 0, arguments, 4);
        assertEquals(StepRecorder.OVERLAPPED_CHUNK, overlapped.chunkLimit(), "a step runs ahead: one large chunk");

        StepRecorder awaited = new StepRecorder(null, MemorySegment.NULL, true);
        awaited.stepQueuedAhead();
        awaited.stepAwaited();
        awaited.launch(function, "k", 1, 1, 32, 0, arguments, 4);
        assertEquals(StepRecorder.FIRST_CHUNK, awaited.chunkLimit(), "the host read its tokens: back to small chunks");

        // Decided at the chunk's first node, so that a step's boundaries do not depend on when the host reads tokens.
        StepRecorder late = new StepRecorder(null, MemorySegment.NULL, true);
        late.launch(function, "k", 1, 1, 32, 0, arguments, 4);
        late.stepQueuedAhead();
        late.launch(function, "k", 1, 1, 32, 0, arguments, 4);
        assertEquals(StepRecorder.FIRST_CHUNK, late.chunkLimit());
    }

    @Test
    void theLastHeldLaunchIsReplacedOnlyWhileItIsLast() {
        StepRecorder.Launch a = hold(1);
        assertEquals(1, a.argument(0));
        StepRecorder.Launch b = hold(2);
        assertNotSame(a, b);
        assertFalse(recorder.replaceLast(a, a.with(0, 10)), "a node held after it: the fusion must not apply");
        assertSame(b, recorder.lastLaunch());
        StepRecorder.Launch fused = b.with(1, 20);
        assertTrue(recorder.replaceLast(b, fused));
        assertSame(fused, recorder.lastLaunch());
        assertEquals(2, fused.argument(0));
        assertEquals(20, fused.argument(1));
        assertEquals(1, recorder.stats().fusions());
    }

    @Test
    void theMarkMovesWithEveryHeldNodeButNotWithAFusion() {
        long start = recorder.mark();
        StepRecorder.Launch a = hold(1);
        long afterLaunch = recorder.mark();
        assertEquals(start + 1, afterLaunch);
        assertTrue(recorder.replaceLast(a, a.with(1, 5)));
        assertEquals(afterLaunch, recorder.mark(), "a fusion queues nothing new");
        recorder.copy(4096, Arena.global().allocate(16), 16);
        assertEquals(afterLaunch + 1, recorder.mark(), "a held copy is new work");
    }

    @Test
    void aHeldCopyIsNotALaunchToFuseWith() {
        StepRecorder.Launch a = hold(1);
        recorder.copy(4096, Arena.global().allocate(16), 16);
        assertNull(recorder.lastLaunch());
        assertFalse(recorder.replaceLast(a, a.with(0, 3)));
        assertEquals(0, recorder.stats().fusions());
    }

    @Test
    void aCopyIntoFreshMemoryMovesToTheChunksStartMergedWithTheCopyItContinues() {
        MemorySegment staging = Arena.global().allocate(4096, 256);
        StepRecorder.Launch rotation = hold(1);
        recorder.copyToFresh(1 << 20, staging.asSlice(0, 4), 4);
        assertSame(rotation, recorder.lastLaunch(), "the copy went ahead: the launch can still take in the next one");
        hold(2);
        // The next slot of the ring, 256 bytes on in host and device memory: one copy of both.
        recorder.copyToFresh((1 << 20) + 256, staging.asSlice(256, 76), 76);
        // 512 bytes further on: not merged.
        recorder.copyToFresh((1 << 20) + 1024, staging.asSlice(1024, 8), 8);
        // Apart in host memory from where it lands: not merged either.
        recorder.copyToFresh((1 << 20) + 1280, staging.asSlice(2048, 8), 8);
        recorder.copy(4096, staging.asSlice(3072, 16), 16);
        assertEquals(List.of("copy of 332 bytes to the device (fresh)", "copy of 8 bytes to the device (fresh)",
                        "copy of 8 bytes to the device (fresh)", "k grid 1x1 block 32 shared 0 (not programmatic)",
                        "k grid 1x1 block 32 shared 0 (not programmatic)", "copy of 16 bytes to the device"),
                recorder.heldNodes(), "an ordinary copy keeps its place");
        assertNull(recorder.lastLaunch());
    }
}
