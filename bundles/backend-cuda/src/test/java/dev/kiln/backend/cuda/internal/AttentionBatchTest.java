package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.AttentionMetadata;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

/** The metadata the attention kernels read on the device: layout and the checks made before any launch. */
class AttentionBatchTest {
    private static final int BLOCK = 4;

    /** Only a batch whose every sequence has exactly one query token lets the split kernel write the cache itself. */
    @Test
    void aBatchIsOneTokenPerSequenceOnlyWhenEverySequenceHasOne() {
        var decode = new AttentionMetadata(new int[] {0, 1, 2}, new int[] {3, 6}, new int[][] {{7}, {2, 5}}, new int[] {30, 21});
        var mixed = new AttentionMetadata(new int[] {0, 3, 4}, new int[] {3, 6}, new int[][] {{7}, {2, 5}},
                new int[] {28, 29, 30, 21});
        // Two sequences, two tokens, yet one of them has none and the other two.
        var uneven = new AttentionMetadata(new int[] {0, 0, 2}, new int[] {3, 6}, new int[][] {{7}, {2, 5}}, new int[] {20, 21});
        assertTrue(AttentionBatch.pack(decode, 10, BLOCK).oneTokenPerSequence());
        assertFalse(AttentionBatch.pack(mixed, 10, BLOCK).oneTokenPerSequence());
        assertFalse(AttentionBatch.pack(uneven, 10, BLOCK).oneTokenPerSequence());
    }

    @Test
    void tokensGetTheirSequencePositionAndSlotAndTablesSitAtTheBucketsStride() {
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
        // Contexts of at most 256 tokens share the smallest bucket: 64 blocks of 4 per table.
        assertEquals(256, packed.contextBucket());
        assertEquals(64, packed.tableStride());
        assertEquals(packed.tablesOffset() + 3 * 64, p.length);
        // Only the blocks each context needs (1, 2 and 2), the rest of each table -1.
        int[] expected = new int[3 * 64];
        Arrays.fill(expected, -1);
        expected[0] = 7;
        expected[64] = 2;
        expected[65] = 5;
        expected[128] = 1;
        expected[129] = 0;
        assertArrayEquals(expected, slice(p, packed.tablesOffset(), 3 * 64));
    }

    @Test
    void theBucketIsTheNextPowerOfTwoOfTheLongestContextAndAtLeast256() {
        assertEquals(256, AttentionBatch.contextBucket(0));
        assertEquals(256, AttentionBatch.contextBucket(1));
        assertEquals(256, AttentionBatch.contextBucket(256));
        assertEquals(512, AttentionBatch.contextBucket(257));
        assertEquals(4096, AttentionBatch.contextBucket(3000));
        assertEquals(1 << 30, AttentionBatch.contextBucket(1 << 30));
        assertThrows(IllegalArgumentException.class, () -> AttentionBatch.contextBucket((1 << 30) + 1));
    }

    /** What graph replay needs: one length for every decode step whose longest context stays in its bucket. */
    @Test
    void theLengthChangesOnlyWithTheBucket() {
        int blockSize = 16;
        int[] lengths = new int[1001];
        for (int context = 1; context <= 1000; context++) {
            // Two sequences decoding one token each, the second always 40 tokens shorter (or 1).
            int other = Math.max(1, context - 40);
            int[][] tables = {blocks(0, Math.ceilDiv(context, blockSize)), blocks(100, Math.ceilDiv(other, blockSize))};
            int[] slots = {slot(tables[0], context - 1, blockSize), slot(tables[1], other - 1, blockSize)};
            var batch = new AttentionMetadata(new int[] {0, 1, 2}, new int[] {context, other}, tables, slots);
            AttentionBatch packed = AttentionBatch.pack(batch, 200, blockSize);
            lengths[context] = packed.packed().length;
            assertEquals(6 + 2 * packed.tableStride(), lengths[context]);
            assertEquals(Math.ceilDiv(packed.contextBucket(), blockSize), packed.tableStride());
        }
        for (int context = 2; context <= 1000; context++) {
            boolean sameBucket = AttentionBatch.contextBucket(context) == AttentionBatch.contextBucket(context - 1);
            if (sameBucket) {
                assertEquals(lengths[context - 1], lengths[context], "length changed inside a bucket at " + context);
            } else {
                assertNotEquals(lengths[context - 1], lengths[context], "bucket edge at " + context);
            }
        }
        assertEquals(6 + 2 * 16, lengths[256]);
        assertEquals(6 + 2 * 32, lengths[257]);
        assertEquals(6 + 2 * 64, lengths[1000]);
    }

    @Test
    void aBlockSizeThatDoesNotDivideTheBucketRoundsTheStrideUp() {
        var batch = new AttentionMetadata(new int[] {0, 1}, new int[] {300}, new int[][] {blocks(0, 43)},
                new int[] {299});
        AttentionBatch packed = AttentionBatch.pack(batch, 43, 7);
        assertEquals(512, packed.contextBucket());
        assertEquals(74, packed.tableStride()); // ceil(512 / 7)
        assertEquals(3 + 74, packed.packed().length);
        assertEquals(42, packed.packed()[3 + 42]);
        assertEquals(-1, packed.packed()[3 + 43]);
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
        // A negative block id inside the context.
        assertThrows(IndexOutOfBoundsException.class, () -> AttentionBatch.pack(
                new AttentionMetadata(new int[] {0, 1}, new int[] {5}, new int[][] {{0, -1}}, new int[] {4}), 4, BLOCK));
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

    private static int[] blocks(int first, int n) {
        int[] b = new int[n];
        for (int i = 0; i < n; i++) b[i] = first + i;
        return b;
    }

    private static int slot(int[] table, int position, int blockSize) {
        return table[position / blockSize] * blockSize + position % blockSize;
    }

    private static int[] slice(int[] a, int from, int n) {
        return Arrays.copyOfRange(a, from, from + n);
    }
}
