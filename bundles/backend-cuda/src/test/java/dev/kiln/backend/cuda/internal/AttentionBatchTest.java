package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kiln.api.attention.AttentionMetadata;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

/** The metadata the attention kernels read on the device: layout and the checks made before any launch. */
class AttentionBatchTest {
    private static final int BLOCK = 4;

    @Test
    void tokensGetTheirSequencePositionAndSlotAndTablesAreConcatenated() {
        // Sequence 0: a 3-token prefill from scratch; sequence 1: one decode token after 5 cached; sequence 2: a
        // 2-token verification after 6 cached, with a table longer than its context needs.
        var batch = new AttentionMetadata(new int[] {0, 3, 4, 6}, new int[] {3, 6, 8},
                new int[][] {{7}, {2, 5}, {1, 0, 9}}, new int[] {28, 29, 30, 21, 6, 7});
        AttentionBatch packed = AttentionBatch.pack(batch, 10, BLOCK);
        assertEquals(6, packed.tokens());
        assertEquals(3, packed.sequences());
        int[] p = packed.packed();
        assertArrayEquals(new int[] {0, 0, 0, 1, 2, 2}, slice(p, packed.sequenceOffset(), 6));
        assertArrayEquals(new int[] {0, 1, 2, 5, 6, 7}, slice(p, packed.positionOffset(), 6));
        assertArrayEquals(new int[] {28, 29, 30, 21, 6, 7}, slice(p, packed.slotOffset(), 6));
        // Only the blocks the context needs: 1, 2 and 2.
        assertArrayEquals(new int[] {0, 1, 3}, slice(p, packed.tableStartOffset(), 3));
        assertArrayEquals(new int[] {7, 2, 5, 1, 0}, slice(p, packed.tablesOffset(), 5));
        assertEquals(packed.tablesOffset() + 5, p.length);
    }

    @Test
    void paddingSlotsPassThrough() {
        var batch = new AttentionMetadata(new int[] {0, 2}, new int[] {2}, new int[][] {{3}}, new int[] {12, -1});
        assertEquals(-1, AttentionBatch.pack(batch, 4, BLOCK).packed()[2 * 2 + 1]);
    }

    @Test
    void inconsistentMetadataIsRefusedBeforeAnyLaunch() {
        // More query tokens than context.
        assertThrows(IllegalArgumentException.class, () -> AttentionBatch.pack(
                new AttentionMetadata(new int[] {0, 3}, new int[] {2}, new int[][] {{0}}, new int[] {0, 1, 2}), 4, BLOCK));
        // A context longer than its block table.
        assertThrows(IllegalArgumentException.class, () -> AttentionBatch.pack(
                new AttentionMetadata(new int[] {0, 1}, new int[] {5}, new int[][] {{0}}, new int[] {4}), 4, BLOCK));
        // A block outside the cache.
        assertThrows(IndexOutOfBoundsException.class, () -> AttentionBatch.pack(
                new AttentionMetadata(new int[] {0, 1}, new int[] {1}, new int[][] {{4}}, new int[] {16}), 4, BLOCK));
        // A slot outside the cache.
        assertThrows(IndexOutOfBoundsException.class, () -> AttentionBatch.pack(
                new AttentionMetadata(new int[] {0, 1}, new int[] {1}, new int[][] {{3}}, new int[] {16}), 4, BLOCK));
        // Too few slots.
        assertThrows(IllegalArgumentException.class, () -> AttentionBatch.pack(
                new AttentionMetadata(new int[] {0, 2}, new int[] {2}, new int[][] {{3}}, new int[] {12}), 4, BLOCK));
        // Query starts and tables that do not match the number of sequences.
        assertThrows(IllegalArgumentException.class, () -> AttentionBatch.pack(
                new AttentionMetadata(new int[] {0, 1}, new int[] {1, 1}, new int[][] {{0}, {1}}, new int[] {0, 4}), 4, BLOCK));
    }

    private static int[] slice(int[] a, int from, int n) {
        return Arrays.copyOfRange(a, from, from + n);
    }
}
