package dev.kiln.engine.drafting;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.model.ForwardBatch;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** A proposer's cache bookkeeping: reservations, eviction of the least recently used, roll-back and donors. */
class DraftCacheTest {
    @Test
    void reservingEvictsTheLeastRecentlyUsedSequencesButNeverThoseKept() {
        var cache = new DraftCache(6, 4);
        var a = cache.entry("a");
        var b = cache.entry("b");
        assertTrue(cache.reserve(a, 8, Set.of()));
        assertTrue(cache.reserve(b, 12, Set.of()));
        assertEquals(1, cache.freeBlocks());
        var c = cache.entry("c");
        assertFalse(cache.reserve(c, 24, Set.of(a, b)), "everything else is in use: nothing changes");
        assertEquals(1, cache.freeBlocks());
        cache.entry("b"); // b used more recently than a
        assertTrue(cache.reserve(c, 8, Set.of(b)));
        assertEquals(2, cache.sequences(), "a was evicted");
        assertEquals(1, cache.freeBlocks(), "a's two blocks freed, c took two");
        cache.release("b");
        assertEquals(4, cache.freeBlocks());
    }

    @Test
    void agreementMeasuresHowMuchOfTheRememberedTokensStillHold() {
        var e = new DraftCache(4, 4).entry("s");
        e.tokens(new int[] {1, 2, 3, 4, 5}, 5);
        e.append(6);
        assertEquals(6, e.knownTokens());
        assertEquals(6, e.agreement(new int[] {1, 2, 3, 4, 5, 6, 7}));
        assertEquals(3, e.agreement(new int[] {1, 2, 3, 9, 5, 6}));
        assertEquals(2, e.agreement(new int[] {1, 2}));
    }

    @Test
    void aDonorSharesItsPrefixAndFinishedSequencesWithoutEntriesAreForgotten() {
        var cache = new DraftCache(8, 4);
        var donor = cache.entry("donor");
        cache.reserve(donor, 10, Set.of());
        donor.tokens(new int[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 10);
        donor.cached(9);
        cache.entry("empty");
        cache.retire("donor");
        cache.retire("empty");
        assertEquals(1, cache.sequences(), "a finished sequence with entries stays, one without is gone");
        var asking = cache.entry("asking");
        assertTrue(cache.reserve(asking, 8, Set.of()));
        DraftCache.Donor d = cache.donorFor(asking, new int[] {1, 2, 3, 4, 5, 6, 0, 0});
        assertSame(donor, d.entry());
        assertEquals(6, d.agreement());
        int[][] plan = cache.copyPlan(donor, asking, 5);
        assertEquals(2, plan[0].length);
        assertArrayEquals(cache.blockTable(donor, 8), plan[0]);
        assertArrayEquals(cache.blockTable(asking, 8), plan[1]);
        assertNull(cache.donorFor(asking, new int[] {9, 9}));
    }

    @Test
    void aBatchLaysOutConsecutivePositionsAfterEachSequencesCachedOnes() {
        var cache = new DraftCache(8, 4);
        var a = cache.entry("a");
        var b = cache.entry("b");
        cache.reserve(a, 7, Set.of());
        cache.reserve(b, 3, Set.of());
        var batch = new DraftBatch(cache, 16);
        assertEquals(-1, batch.add(a, new int[] {10, 11, 12, 13, 14, 15, 16}, 5, 2, 5, false));
        assertEquals(0, batch.add(b, new int[] {20, 21, 22}, 0, 3, 0, true));
        ForwardBatch f = batch.build(true);
        assertArrayEquals(new int[] {15, 16, 20, 21, 22}, f.tokens());
        assertArrayEquals(new int[] {5, 6, 0, 1, 2}, f.positions());
        assertArrayEquals(new int[] {0, 2, 5}, f.attention().queryStart());
        assertArrayEquals(new int[] {7, 3}, f.attention().contextLength());
        assertArrayEquals(new int[] {4}, f.logitRows());
        assertEquals(cache.slot(a, 5), f.attention().slotMapping()[0]);
        assertEquals(cache.slot(b, 2), f.attention().slotMapping()[4]);
        assertTrue(f.returnHiddenStates());
        assertEquals(11, batch.room());
        batch.clear();
        assertEquals(0, batch.size());
        assertEquals(0, batch.logitRows());
    }
}
