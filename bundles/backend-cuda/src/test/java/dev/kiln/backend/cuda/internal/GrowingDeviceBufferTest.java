package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The grow-only scratch's policy, over a recording allocator (no GPU needed). */
class GrowingDeviceBufferTest {
    private final List<Long> allocated = new ArrayList<>();
    private final List<Long> freed = new ArrayList<>();
    private long next = 0x1000;

    private GrowingDeviceBuffer buffer() {
        return new GrowingDeviceBuffer(bytes -> {
            allocated.add(bytes);
            return next += 0x1000;
        }, freed::add);
    }

    @Test
    void smallerRequestsKeepTheAddressAndLargerOnesAtLeastDoubleIt() {
        try (GrowingDeviceBuffer buffer = buffer()) {
            long first = buffer.atLeast(100);
            assertEquals(first, buffer.atLeast(100));
            assertEquals(first, buffer.atLeast(1));
            long second = buffer.atLeast(101); // doubles: 200 bytes
            assertEquals(List.of(100L, 200L), allocated);
            assertEquals(List.of(first), freed);
            assertEquals(second, buffer.atLeast(200));
            buffer.atLeast(1000); // more than double: exactly what is needed
            assertEquals(List.of(100L, 200L, 1000L), allocated);
        }
        assertEquals(3, freed.size());
    }

    @Test
    void anUnusedBufferAllocatesAndFreesNothing() {
        buffer().close();
        assertEquals(List.of(), allocated);
        assertEquals(List.of(), freed);
    }
}
