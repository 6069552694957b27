package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.tensor.DType;
import org.junit.jupiter.api.Test;

/** The split attention kernel's launch shapes: what each geometry gets, and that nothing depends on more than the bucket. */
class SplitAttentionPlanTest {
    private static final int H100_SMS = 132;

    @Test
    void theQwen15bShapeSharesOneBlockPerKvHeadAndSplitsUntilTheDeviceIsFull() {
        // 12 query heads over 2 KV heads of 128: both groups of 6 in one block each, 32 keys per shared-memory tile.
        SplitAttentionPlan at256 = SplitAttentionPlan.of(1, 12, 2, 128, 128, false, 256, H100_SMS);
        assertEquals(6, at256.headsPerBlock());
        assertEquals(1, at256.headBlocks());
        assertEquals(32, at256.tile());
        assertTrue(at256.sharedBytes() <= Kernels.DEFAULT_SHARED_BYTES);
        // At most 264 blocks for 2 rows, so up to 128 splits: as many as 32-key chunks allow at 256.
        assertEquals(8, at256.splits());
        assertEquals(32, at256.chunk());
        SplitAttentionPlan at8192 = SplitAttentionPlan.of(1, 12, 2, 128, 128, false, 8192, H100_SMS);
        assertEquals(128, at8192.splits());
        assertEquals(64, at8192.chunk());
        assertEquals(2, at8192.rows(1, 2));
        // Batch 32 at 2048: 64 rows, 264 / 64 -> 4 splits of 512.
        SplitAttentionPlan batch32 = SplitAttentionPlan.of(32, 12, 2, 128, 128, false, 2048, H100_SMS);
        assertEquals(4, batch32.splits());
        assertEquals(512, batch32.chunk());
        assertEquals(32L * 12 * 4 * (128 + 4) * Float.BYTES, batch32.partialBytes(32, 12, 128));
        assertEquals(4 * Float.BYTES, SplitAttentionPlan.combineSharedBytes(batch32.splits()));
    }

    /**
     * With clusters a small decode batch takes up to 16 short splits that merge in their cluster (no partial records,
     * no combine); batches that would not fit one wave, contexts needing chunks over 32 keys and MLA's latent
     * geometry keep the plan without them.
     */
    @Test
    void smallDecodeBatchesMergeTheirSplitsInsideAClusterWhereTheDeviceHasThem() {
        SplitAttentionPlan at256 = SplitAttentionPlan.of(1, 12, 2, 128, 128, false, 256, H100_SMS, 16);
        assertTrue(at256.clustered());
        assertEquals(16, at256.splits());
        assertEquals(16, at256.chunk());
        assertEquals(16, at256.tile());
        assertEquals(16, at256.clusterSize());
        assertEquals(0, at256.partialBytes(1, 12, 128));
        assertTrue(at256.sharedBytes() <= Kernels.DEFAULT_SHARED_BYTES);
        // Only the portable size: 8 splits of 32.
        SplitAttentionPlan portable = SplitAttentionPlan.of(1, 12, 2, 128, 128, false, 256, H100_SMS, 8);
        assertTrue(portable.clustered());
        assertEquals(8, portable.splits());
        assertEquals(32, portable.chunk());
        // 512: 16 splits of 32; 1024 would need 64-key chunks, so the combine kernel's plan.
        SplitAttentionPlan at512 = SplitAttentionPlan.of(1, 12, 2, 128, 128, false, 512, H100_SMS, 16);
        assertTrue(at512.clustered());
        assertEquals(32, at512.chunk());
        SplitAttentionPlan at1024 = SplitAttentionPlan.of(1, 12, 2, 128, 128, false, 1024, H100_SMS, 16);
        assertFalse(at1024.clustered());
        assertEquals(SplitAttentionPlan.of(1, 12, 2, 128, 128, false, 1024, H100_SMS), at1024);
        assertEquals(1, at1024.clusterSize());
        // Batch 8 (16 rows): 8 splits keep the grid in one wave of 132 SMs; batch 16 would need 64-key chunks.
        SplitAttentionPlan batch8 = SplitAttentionPlan.of(8, 12, 2, 128, 128, false, 256, H100_SMS, 16);
        assertTrue(batch8.clustered());
        assertEquals(8, batch8.splits());
        assertTrue(batch8.rows(8, 2) * batch8.splits() <= H100_SMS);
        assertFalse(SplitAttentionPlan.of(16, 12, 2, 128, 128, false, 256, H100_SMS, 16).clustered());
        // MLA's latent cache: no clusters.
        assertFalse(SplitAttentionPlan.of(1, 16, 1, 576, 512, true, 256, H100_SMS, 16).clustered());
        // Without clusters the plan is the old one.
        assertEquals(SplitAttentionPlan.of(1, 12, 2, 128, 128, false, 256, H100_SMS),
                SplitAttentionPlan.of(1, 12, 2, 128, 128, false, 256, H100_SMS, 1));
        assertFalse(SplitAttentionPlan.of(1, 12, 2, 128, 128, false, 256, H100_SMS).clustered());
    }

    @Test
    void manyTokensTakeOneSplitAndNeedNoPartials() {
        SplitAttentionPlan prefill = SplitAttentionPlan.of(512, 12, 2, 128, 128, false, 4096, H100_SMS);
        assertEquals(1, prefill.splits());
        assertEquals(4096, prefill.chunk());
        assertEquals(0, prefill.partialBytes(512, 12, 128));
        assertEquals(1024, prefill.rows(512, 2));
    }

    /** Wide latent queries take chunks of WIDE_MIN_CHUNK keys, so a short context still spreads over many SMs. */
    @Test
    void latentAttentionTakesShorterChunksThanNarrowHeads() {
        SplitAttentionPlan latent = SplitAttentionPlan.of(1, 16, 1, 576, 512, true, 256, H100_SMS);
        assertEquals(SplitAttentionPlan.WIDE_MIN_CHUNK, latent.chunk());
        assertEquals(256 / SplitAttentionPlan.WIDE_MIN_CHUNK, latent.splits());
        SplitAttentionPlan narrow = SplitAttentionPlan.of(1, 12, 2, 128, 128, false, 256, H100_SMS);
        assertEquals(SplitAttentionPlan.MIN_CHUNK, narrow.chunk());
    }

    @Test
    void latentAttentionSplitsItsSixteenHeadsOverTwoBlocksToFitSharedMemory() {
        SplitAttentionPlan plan = SplitAttentionPlan.of(1, 16, 1, 576, 512, true, 2048, H100_SMS);
        assertNotNull(plan);
        assertEquals(8, plan.headsPerBlock());
        assertEquals(2, plan.headBlocks());
        assertTrue(plan.tile() >= SplitAttentionPlan.MIN_TILE);
        assertTrue(plan.sharedBytes() <= Kernels.DEFAULT_SHARED_BYTES);
        // Each thread's outputs fit its registers: heads x value float4s over the block's threads.
        assertTrue(plan.headsPerBlock() * 512 / 4
                <= SplitAttentionPlan.THREADS * SplitAttentionPlan.MAX_OUTPUTS_PER_THREAD);
        // Values in the keys take no shared memory of their own: neither tile rows nor a new entry's value row.
        assertEquals(SplitAttentionPlan.sharedBytes(8, plan.tile(), 576, 512, false) - plan.tile() * (512 + 4) * 4
                - 512 * 4, plan.sharedBytes());
    }

    /** Graph replay needs the launch to repeat: the plan is a function of the bucket, not of the contexts in it. */
    @Test
    void thePlanDependsOnlyOnTokensGeometryAndBucket() {
        for (int tokens : new int[] {1, 3, 8, 32, 100}) {
            SplitAttentionPlan first = SplitAttentionPlan.of(tokens, 12, 2, 128, 128, false, 1024, H100_SMS);
            assertEquals(first, SplitAttentionPlan.of(tokens, 12, 2, 128, 128, false, 1024, H100_SMS));
            assertEquals(1024, first.chunk() * first.splits(), "splits cover the bucket exactly");
            assertEquals(1, Integer.bitCount(first.chunk()), "power-of-two chunks");
            assertTrue(first.chunk() >= SplitAttentionPlan.MIN_CHUNK);
            assertTrue(first.chunk() % first.tile() == 0);
            assertTrue(first.rows(tokens, 2) * (long) first.splits() <= 2 * H100_SMS || first.splits() == 1,
                    "at most two blocks per SM unless one split already exceeds that");
        }
    }

    @Test
    void everyPlanFitsSharedMemoryAndCoversTheGroup() {
        int[][] geometries = {{4, 4, 64, 64}, {32, 8, 128, 128}, {64, 8, 128, 128}, {128, 1, 576, 512},
                {16, 1, 192, 128}, {8, 8, 256, 256}, {40, 8, 128, 128}};
        for (int[] g : geometries) {
            for (boolean inKeys : new boolean[] {false, true}) {
                if (inKeys && g[3] > g[2]) continue;
                SplitAttentionPlan plan = SplitAttentionPlan.of(2, g[0], g[1], g[2], g[3], inKeys, 512, H100_SMS);
                assertNotNull(plan, java.util.Arrays.toString(g));
                int group = g[0] / g[1];
                assertTrue(plan.headsPerBlock() * plan.headBlocks() >= group);
                assertTrue(plan.headsPerBlock() * (plan.headBlocks() - 1) < group, "no empty head block");
                assertTrue(plan.sharedBytes() <= Kernels.DEFAULT_SHARED_BYTES, plan.toString());
                assertTrue(plan.headsPerBlock() * g[3] / 4
                        <= SplitAttentionPlan.THREADS * SplitAttentionPlan.MAX_OUTPUTS_PER_THREAD);
            }
        }
    }

    @Test
    void headSizesThatAreNotWholeFloat4RowsAreLeftToThePerHeadKernel() {
        assertNull(SplitAttentionPlan.of(1, 4, 2, 66, 64, false, 256, H100_SMS));
        assertNull(SplitAttentionPlan.of(1, 4, 2, 64, 62, false, 256, H100_SMS));
        assertFalse(SplitAttentionPlan.fits(66, 64, false));
        assertTrue(SplitAttentionPlan.fits(576, 512, true));
        // Keys too long for even one head and the smallest tile in 48 KiB.
        assertFalse(SplitAttentionPlan.fits(8192, 128, false));
    }

    /** A bf16 cache is read 8 elements (16 bytes) at a time: heads must be whole 8-element rows. */
    @Test
    void aBf16CacheNeedsHeadsOfWholeEightElementRows() {
        assertEquals(4, SplitAttentionPlan.elementsPerLoad(DType.F32));
        assertEquals(8, SplitAttentionPlan.elementsPerLoad(DType.BF16));
        assertThrows(IllegalArgumentException.class, () -> SplitAttentionPlan.elementsPerLoad(DType.F16));
        assertTrue(SplitAttentionPlan.fits(128, 128, false, DType.BF16));
        assertTrue(SplitAttentionPlan.fits(576, 512, true, DType.BF16));
        assertTrue(SplitAttentionPlan.fits(20, 12, false, DType.F32));
        assertFalse(SplitAttentionPlan.fits(20, 16, false, DType.BF16));
        assertFalse(SplitAttentionPlan.fits(16, 12, false, DType.BF16));
        assertFalse(SplitAttentionPlan.fits(128, 128, false, DType.F16));
        assertFalse(SplitAttentionPlan.fits(8192, 128, false, DType.BF16));
        // The f32 answer is the geometry-only one.
        for (int dim : new int[] {4, 12, 64, 66, 128, 576}) {
            assertEquals(SplitAttentionPlan.fits(dim, 64, false), SplitAttentionPlan.fits(dim, 64, false, DType.F32));
        }
    }

    @Test
    void invalidBatchesAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> SplitAttentionPlan.of(1, 12, 2, 128, 128, false, 300, H100_SMS));
        assertThrows(IllegalArgumentException.class, () -> SplitAttentionPlan.of(0, 12, 2, 128, 128, false, 256, H100_SMS));
        assertThrows(IllegalArgumentException.class, () -> SplitAttentionPlan.of(1, 12, 5, 128, 128, false, 256, H100_SMS));
    }
}
