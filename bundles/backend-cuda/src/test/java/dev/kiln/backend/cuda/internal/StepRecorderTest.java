package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
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
}
