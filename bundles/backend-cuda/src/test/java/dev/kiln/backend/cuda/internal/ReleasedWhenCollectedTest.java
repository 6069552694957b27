package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.ref.Reference;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Releases run once each: for an owner once its collection is enqueued (simulated with {@link Reference#enqueue}, so
 * the test does not depend on the garbage collector's timing), for the rest at close.
 */
class ReleasedWhenCollectedTest {
    @Test
    void aCollectedOwnersReleaseRunsAtTheNextExpungeAndTheOthersAtClose() {
        List<String> released = new ArrayList<>();
        Object first = new Object(), second = new Object();
        try (ReleasedWhenCollected<Object> owners = new ReleasedWhenCollected<>()) {
            Reference<Object> firstReference = owners.track(first, () -> released.add("first"));
            owners.track(second, () -> released.add("second"));
            owners.expunge();
            assertEquals(List.of(), released, "nothing collected yet");

            firstReference.enqueue(); // what the collector does once the first owner is unreachable
            owners.expunge();
            assertEquals(List.of("first"), released);
            assertEquals(1, owners.size());
            owners.expunge();
            assertEquals(List.of("first"), released, "a release runs once");
        }
        assertEquals(List.of("first", "second"), released, "close releases the owners still alive");
    }

    @Test
    void anOwnerNoOneHoldsIsReleasedOnceTheCollectorHasRun() throws InterruptedException {
        List<String> released = new ArrayList<>();
        try (ReleasedWhenCollected<Object> owners = new ReleasedWhenCollected<>()) {
            owners.track(new Object(), () -> released.add("tables"));
            for (int i = 0; i < 200 && released.isEmpty(); i++) {
                System.gc();
                Thread.sleep(20);
                owners.expunge();
            }
            assertEquals(List.of("tables"), released);
            assertEquals(0, owners.size());
        }
        assertEquals(List.of("tables"), released, "not again at close");
    }
}
