package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

/** The rotary tables' size for a position: a power of two above it, and no overflow near the top of an int. */
class DeviceRotaryEmbeddingTest {
    @Test
    void theTablesCoverThePositionInAPowerOfTwoOfAtLeast256() {
        assertEquals(256, DeviceRotaryEmbedding.tablePositions(0));
        assertEquals(256, DeviceRotaryEmbedding.tablePositions(127));
        assertEquals(256, DeviceRotaryEmbedding.tablePositions(255));
        assertEquals(512, DeviceRotaryEmbedding.tablePositions(256));
        assertEquals(131_072, DeviceRotaryEmbedding.tablePositions(100_000));
        assertEquals(1 << 30, DeviceRotaryEmbedding.tablePositions((1 << 30) - 1));
    }

    @Test
    void positionsFrom2To30AreRefusedRatherThanWrappedToSmallTables() {
        // Integer.highestOneBit(2^30) << 1 is Integer.MIN_VALUE: a table of 256 positions read far past its end.
        assertThrows(IllegalArgumentException.class, () -> DeviceRotaryEmbedding.tablePositions(1 << 30));
        assertThrows(IllegalArgumentException.class, () -> DeviceRotaryEmbedding.tablePositions(Integer.MAX_VALUE));
    }
}
