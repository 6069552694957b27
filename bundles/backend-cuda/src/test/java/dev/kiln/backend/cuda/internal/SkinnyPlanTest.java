package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The launch rules of the tensor-core few-token products, without a GPU (the 1.5B shape on 132 SMs). */
class SkinnyPlanTest {
    private static final int SMS = 132;

    @Test
    void tokensPickTheEntryWithEnoughTiles() {
        assertEquals(1, SkinnyPlan.tokenTiles(2));
        assertEquals(1, SkinnyPlan.tokenTiles(8));
        assertEquals(2, SkinnyPlan.tokenTiles(9));
        assertEquals(2, SkinnyPlan.tokenTiles(16));
        assertEquals(4, SkinnyPlan.tokenTiles(17));
        assertEquals(4, SkinnyPlan.tokenTiles(32));
        assertTrue(SkinnyPlan.takes(32, 1536));
        assertFalse(SkinnyPlan.takes(33, 1536));
        assertFalse(SkinnyPlan.takes(8, 100));
    }

    @Test
    void fewRowsAreSplitOverAClusterAndLongRowsTakeTwoRowGroups() {
        // o: 48 tiles of one row group, 24 chunks: three blocks of eight warps, a chunk each.
        assertEquals(new SkinnyPlan(4, 1, 48, 3, 1), SkinnyPlan.of(new int[] {1536}, 1536, 32, SMS, 8, false));
        // q, k and v in one launch: 64 tiles.
        assertEquals(new SkinnyPlan(2, 1, 64, 3, 1), SkinnyPlan.of(new int[] {1536, 256, 256}, 1536, 16, SMS, 8, false));
        // down: 140 chunks a row, two row groups from 9 tokens on, the largest cluster.
        assertEquals(new SkinnyPlan(4, 2, 24, 8, 1), SkinnyPlan.of(new int[] {1536}, 8960, 32, SMS, 8, false));
        assertEquals(new SkinnyPlan(1, 1, 48, 8, 1), SkinnyPlan.of(new int[] {1536}, 8960, 4, SMS, 8, false));
        // lm_head: tiles enough for every SM twice, no cluster.
        assertEquals(new SkinnyPlan(4, 1, 4748, 1, 1), SkinnyPlan.of(new int[] {151936}, 1536, 32, SMS, 8, false));
        // Without clusters (before Hopper) one block a tile.
        assertEquals(1, SkinnyPlan.of(new int[] {1536}, 8960, 32, SMS, 1, false).cluster());
    }

    @Test
    void segmentsThatDoNotFillWholeTilesFallBackToOneRowGroup() {
        assertEquals(1, SkinnyPlan.of(new int[] {96, 64}, 8960, 32, SMS, 8, false).rowGroups());
        assertEquals(2, SkinnyPlan.of(new int[] {128, 64}, 8960, 32, SMS, 8, false).rowGroups());
        assertTrue(SkinnyPlan.of(new int[] {1536}, 1536, 32, SMS, 8, false).tilesWhole(1536));
        assertFalse(SkinnyPlan.of(new int[] {1536}, 1536, 32, SMS, 8, false).tilesWhole(1550));
    }

    @Test
    void theGatedMlpSplitsColumnsOnlyWhenItsTilesAreFewerThanTheSms() {
        assertEquals(new SkinnyPlan(4, 4, 140, 1, 1), SkinnyPlan.gated(8960, 1536, 32, SMS, 8, false));
        assertEquals(new SkinnyPlan(1, 1, 560, 1, 1), SkinnyPlan.gated(8960, 1536, 4, SMS, 8, false));
        SkinnyPlan small = SkinnyPlan.gated(160, 64, 20, SMS, 8, false);
        assertEquals(3, small.tiles());
        assertEquals(1, small.cluster()); // one chunk: nothing to split
    }

    @Test
    void sharedMemoryStaysWithinTwoBlocksAnSm() {
        for (int tiles : new int[] {1, 2, 4}) {
            for (int groups = 1; groups <= tiles; groups *= 2) {
                int cluster = SkinnyPlan.largestCluster(tiles, groups, 1 << 20, 8);
                assertTrue(SkinnyPlan.sharedBytes(tiles, groups, cluster) <= 99 * 1024, tiles + "/" + groups);
                assertTrue(cluster >= 1);
            }
        }
        // Tree of 4 x 1 fragments of 4 KB, seven pushed fragments: 44 KB.
        assertEquals(16 * 1024 + 7 * 4096, SkinnyPlan.sharedBytes(4, 1, 8));
    }

    @Test
    void int4AndFp8TakeTwoTokenGroupsFromSeventeenTokens() {
        // Four row groups of 32 rows, the tokens in two groups: o in 12 tiles split 7 ways (16 KB a pushed block),
        // gate/up's 8960 pairs in 140 tiles, lm_head in 1187; below 17 tokens the plain plans.
        assertEquals(new SkinnyPlan(4, 4, 12, 7, 2), SkinnyPlan.of(new int[] {1536}, 1536, 32, SMS, 8, true));
        assertEquals(new SkinnyPlan(4, 4, 1187, 1, 2), SkinnyPlan.of(new int[] {151936}, 1536, 24, SMS, 8, true));
        assertEquals(new SkinnyPlan(4, 4, 140, 1, 2), SkinnyPlan.gated(8960, 1536, 32, SMS, 8, true));
        assertEquals(new SkinnyPlan(2, 1, 64, 3, 1), SkinnyPlan.of(new int[] {1536, 256, 256}, 1536, 16, SMS, 8, true));
        SkinnyPlan o = SkinnyPlan.of(new int[] {1536}, 1536, 32, SMS, 8, true);
        assertEquals("kiln_skinny_int4_n4_r4_t2", o.entry("int4"));
        assertEquals(6 * 8 * 2048, o.sharedBytes());
        assertTrue(o.sharedBytes() <= 99 * 1024);
        assertEquals("kiln_skinny_silu_fp8_n4_r4_t2", SkinnyPlan.gated(8960, 1536, 32, SMS, 8, true).gatedEntry("fp8"));
        assertTrue(SkinnyPlan.of(new int[] {1536}, 1536, 32, SMS, 8, true).tilesWhole(1536));
        assertFalse(SkinnyPlan.of(new int[] {1536}, 1536, 32, SMS, 8, true).tilesWhole(1568));
    }
}
