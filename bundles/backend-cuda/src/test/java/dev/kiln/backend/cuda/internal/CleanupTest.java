package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** One release failing (a device fault) does not leave the later ones, the context's above all, undone. */
class CleanupTest {
    @Test
    void everyStepRunsAndTheFirstFailureCarriesTheLaterOnes() {
        List<String> ran = new ArrayList<>();
        IllegalStateException first = new IllegalStateException("free after a fault");
        IllegalStateException second = new IllegalStateException("event after a fault");
        RuntimeException thrown = assertThrows(RuntimeException.class, () -> Cleanup.all(
                () -> {
                    ran.add("tables");
                    throw first;
                },
                () -> ran.add("readbacks"),
                () -> {
                    ran.add("events");
                    throw second;
                },
                () -> ran.add("context")));
        assertSame(first, thrown);
        assertArrayEquals(new Throwable[] {second}, thrown.getSuppressed());
        assertEquals(List.of("tables", "readbacks", "events", "context"), ran);
    }

    @Test
    void stepsThatSucceedThrowNothing() {
        List<String> ran = new ArrayList<>();
        Cleanup.all(() -> ran.add("a"), () -> ran.add("b"));
        Cleanup.all();
        assertEquals(List.of("a", "b"), ran);
    }
}
