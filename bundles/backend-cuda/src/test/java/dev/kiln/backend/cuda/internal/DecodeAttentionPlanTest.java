package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** What the decode kernel takes, and how it splits a step's contexts. */
class DecodeAttentionPlanTest {
    private static final int H100_SMS = 132;

    @Test
    void batchOneSplitsUntilAClusterIsFullWithAtLeastOnePassASplit() {
        // 2 KV heads: 256 keys in 8 splits of one pass, 512 in 16, 2048 in 16 of 4 passes; 4096 would need 8 passes.
        assertEquals(new DecodeAttentionPlan(8, 32), DecodeAttentionPlan.of(1, 2, 256, H100_SMS, 16));
        assertEquals(new DecodeAttentionPlan(16, 32), DecodeAttentionPlan.of(1, 2, 512, H100_SMS, 16));
        assertEquals(new DecodeAttentionPlan(16, 128), DecodeAttentionPlan.of(1, 2, 2048, H100_SMS, 16));
        assertNull(DecodeAttentionPlan.of(1, 2, 4096, H100_SMS, 16));
        // Portable clusters only: 8 splits, so 1024 keys already need 4 passes and 2048 more than the most.
        assertEquals(new DecodeAttentionPlan(8, 128), DecodeAttentionPlan.of(1, 2, 1024, H100_SMS, 8));
        assertNull(DecodeAttentionPlan.of(1, 2, 2048, H100_SMS, 8));
        // No clusters: one split, so only the shortest bucket is not too long for one block.
        assertNull(DecodeAttentionPlan.of(1, 2, 256, H100_SMS, 1));
    }

    @Test
    void largerBatchesTakeFewerSplitsToStayInOneWave() {
        // 8 tokens x 2 KV heads = 16 rows: 8 splits (128 blocks); 32 tokens: 2 splits; 64 tokens: 1 split of 256 keys,
        // too long.
        assertEquals(new DecodeAttentionPlan(8, 32), DecodeAttentionPlan.of(8, 2, 256, H100_SMS, 16));
        assertEquals(new DecodeAttentionPlan(2, 128), DecodeAttentionPlan.of(32, 2, 256, H100_SMS, 16));
        assertNull(DecodeAttentionPlan.of(32, 2, 512, H100_SMS, 16));
        assertNull(DecodeAttentionPlan.of(64, 2, 256, H100_SMS, 16));
        for (int tokens = 1; tokens <= 32; tokens++) {
            DecodeAttentionPlan plan = DecodeAttentionPlan.of(tokens, 2, 256, H100_SMS, 16);
            if (plan == null) continue;
            assertTrue((long) tokens * 2 * plan.splits() <= H100_SMS || plan.splits() == 1, plan.toString());
            assertEquals(0, plan.chunk() % DecodeAttentionPlan.KEYS_PER_PASS);
            assertEquals(256, plan.chunk() * plan.splits());
        }
    }

    @Test
    void onlyBf16HeadsOf128WithAtMostEightQueriesAKvHead() {
        assertTrue(DecodeAttentionPlan.fits(12, 2, 128, 128, false));
        assertTrue(DecodeAttentionPlan.fits(64, 8, 128, 128, false));
        assertFalse(DecodeAttentionPlan.fits(32, 2, 128, 128, false)); // 16 a KV head
        assertFalse(DecodeAttentionPlan.fits(12, 2, 64, 64, false));
        assertFalse(DecodeAttentionPlan.fits(16, 1, 576, 512, true));
        assertFalse(DecodeAttentionPlan.fits(12, 2, 128, 128, true));
    }

    @Test
    void theRotaryFoldsInWhenItsPairsAreOnesTheLanesHold() {
        assertTrue(DecodeAttentionPlan.foldsRotary(0, 64, false));
        assertTrue(DecodeAttentionPlan.foldsRotary(0, 64, true));
        assertTrue(DecodeAttentionPlan.foldsRotary(0, 32, true));
        assertFalse(DecodeAttentionPlan.foldsRotary(0, 32, false)); // halves of part of the head
        assertFalse(DecodeAttentionPlan.foldsRotary(64, 32, true));
        assertFalse(DecodeAttentionPlan.foldsRotary(0, 0, false));
    }

    @Test
    void aBatchItCannotDescribeIsRefused() {
        assertThrows(IllegalArgumentException.class, () -> DecodeAttentionPlan.of(0, 2, 256, H100_SMS, 16));
        assertThrows(IllegalArgumentException.class, () -> DecodeAttentionPlan.of(1, 2, 300, H100_SMS, 16));
    }
}
