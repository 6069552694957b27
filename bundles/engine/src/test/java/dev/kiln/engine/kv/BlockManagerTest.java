package dev.kiln.engine.kv;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/** Block allocation, reference counts, prefix-cache hits and the eviction order of the free queue. */
class BlockManagerTest {
    private static final int BLOCK = 4;
    private static final int[] NONE = new int[0];

    private static int[] tokens(int n, int salt) {
        return IntStream.range(0, n).map(i -> i * 7 + salt).toArray();
    }

    /** A table holding {@code tokens}, computed and registered. */
    private static BlockTable computed(BlockManager blocks, int[] tokens) {
        BlockTable table = new BlockTable();
        int[] hits = blocks.findCachedPrefix(tokens, tokens.length, tokens.length - 1);
        blocks.allocate(table, tokens.length, hits);
        blocks.registerFullBlocks(table, tokens, tokens.length);
        return table;
    }

    @Test
    void allocationTakesWholeBlocksAndFreeingReturnsThem() {
        var blocks = new BlockManager(8, BLOCK);
        var table = new BlockTable();
        blocks.allocate(table, 9, NONE);
        assertEquals(3, table.size());
        assertEquals(3, blocks.usedBlocks());
        assertEquals(5, blocks.freeBlocks());
        blocks.allocate(table, 12, NONE);
        assertEquals(3, table.size(), "the third block still has room");
        assertEquals(table.get(2) * BLOCK + 1, table.slot(9, BLOCK));
        blocks.free(table);
        assertEquals(0, table.size());
        assertEquals(0, blocks.usedBlocks());
        assertEquals(8, blocks.freeBlocks());
        assertFalse(blocks.canAllocate(table, 33, NONE));
        assertThrows(IllegalStateException.class, () -> blocks.allocate(new BlockTable(), 33, NONE));
    }

    @Test
    void truncatingGivesBackTheBlocksOfRejectedDraftTokensFirstInLine() {
        var blocks = new BlockManager(8, BLOCK);
        int[] tokens = tokens(6, 1);
        BlockTable table = computed(blocks, tokens); // 6 tokens: one full registered block and one partial
        int[] kept = table.ids().clone();
        blocks.allocate(table, 6 + 7, NONE); // room for 7 draft tokens: two more blocks
        assertEquals(4, table.size());
        int[] drafted = table.ids().clone();
        blocks.truncate(table, 7); // one draft token accepted
        assertArrayEquals(kept, table.ids());
        assertEquals(2, blocks.usedBlocks());
        assertEquals(1, blocks.cachedBlocks(), "the registered block stays");
        // The given-back blocks hold nothing worth keeping: they are the next ones handed out.
        var other = new BlockTable();
        blocks.allocate(other, 2 * BLOCK, NONE);
        assertEquals(java.util.Set.of(drafted[2], drafted[3]), java.util.Set.of(other.get(0), other.get(1)));
        blocks.truncate(table, 8); // no-op: still two blocks
        assertEquals(2, table.size());
        assertThrows(IllegalStateException.class, () -> blocks.truncate(table, 0), "a hashed block is never dropped");
    }

    @Test
    void fullBlocksOfAComputedPrefixAreFoundAndShared() {
        var blocks = new BlockManager(16, BLOCK);
        int[] prompt = tokens(10, 1); // two full blocks and two tokens
        BlockTable first = computed(blocks, prompt);
        assertEquals(2, blocks.cachedBlocks());

        int[] hits = blocks.findCachedPrefix(prompt, prompt.length, prompt.length - 1);
        assertArrayEquals(new int[] {first.get(0), first.get(1)}, hits);
        BlockTable second = new BlockTable();
        blocks.allocate(second, prompt.length, hits);
        assertEquals(first.get(0), second.get(0));
        assertEquals(2, blocks.refCount(first.get(0)));
        assertTrue(second.get(2) != first.get(2), "the partial block is private");
        assertEquals(4, blocks.usedBlocks());

        // At least one token is always left to compute: an 8-token prompt hits one block, not two.
        assertEquals(1, blocks.findCachedPrefix(prompt, 8, 7).length);
        // A different token anywhere in a block ends the match there.
        int[] other = prompt.clone();
        other[5] = 999;
        assertEquals(1, blocks.findCachedPrefix(other, other.length, other.length - 1).length);
        // The same block contents after a different prefix are a different block.
        int[] shifted = tokens(10, 1);
        shifted[0] = 1000;
        assertEquals(0, blocks.findCachedPrefix(shifted, shifted.length, shifted.length - 1).length);

        blocks.free(first);
        assertEquals(1, blocks.refCount(second.get(0)));
        blocks.free(second);
        assertEquals(0, blocks.usedBlocks());
        assertEquals(2, blocks.findCachedPrefix(prompt, prompt.length, prompt.length - 1).length,
                "freed blocks stay cached until reused");
    }

    @Test
    void uncachedFreeBlocksAreReusedFirstThenCachedOnesLeastRecentlyFreedFirst() {
        var blocks = new BlockManager(6, BLOCK);
        int[] a = tokens(9, 1); // blocks: a0 a1 (cached), a2 (partial)
        int[] b = tokens(9, 2);
        BlockTable ta = computed(blocks, a);
        BlockTable tb = computed(blocks, b);
        int[] aIds = ta.ids().clone();
        int[] bIds = tb.ids().clone();
        blocks.free(ta);
        blocks.free(tb);

        // The two partial blocks go first, before any cached one is evicted.
        BlockTable taker = new BlockTable();
        blocks.allocate(taker, 8, NONE);
        assertEquals(java.util.Set.of(aIds[2], bIds[2]), java.util.Set.of(taker.get(0), taker.get(1)));
        assertEquals(2, blocks.findCachedPrefix(a, a.length, a.length - 1).length);
        assertEquals(2, blocks.findCachedPrefix(b, b.length, b.length - 1).length);

        // Then a's blocks (freed before b's), its last block first.
        blocks.allocate(taker, 12, NONE);
        assertEquals(aIds[1], taker.get(2));
        assertEquals(1, blocks.findCachedPrefix(a, a.length, a.length - 1).length);
        assertEquals(2, blocks.findCachedPrefix(b, b.length, b.length - 1).length);
    }

    @Test
    void cachedBlocksWaitingInTheFreeQueueAreNotCountedTwice() {
        var blocks = new BlockManager(3, BLOCK);
        int[] prompt = tokens(9, 3);
        BlockTable first = computed(blocks, prompt); // all three blocks
        blocks.free(first);
        int[] hits = blocks.findCachedPrefix(prompt, prompt.length, prompt.length - 1);
        assertEquals(2, hits.length);
        // Reusing two cached blocks and taking one more fits in three blocks; a fourth would not.
        assertTrue(blocks.canAllocate(new BlockTable(), 12, hits));
        assertFalse(blocks.canAllocate(new BlockTable(), 13, hits));
    }

    @Test
    void aPrefixComputedTwiceConcurrentlyIsCachedOnce() {
        var blocks = new BlockManager(8, BLOCK);
        int[] prompt = tokens(8, 4);
        BlockTable a = new BlockTable();
        BlockTable b = new BlockTable();
        blocks.allocate(a, 8, NONE);
        blocks.allocate(b, 8, NONE);
        blocks.registerFullBlocks(a, prompt, 8);
        blocks.registerFullBlocks(b, prompt, 8);
        assertEquals(2, blocks.cachedBlocks());
        assertArrayEquals(a.ids(), blocks.findCachedPrefix(prompt, 8, 8));
        blocks.free(a);
        blocks.free(b);
        assertEquals(0, blocks.usedBlocks());
        assertEquals(8, blocks.freeBlocks());
    }
}
