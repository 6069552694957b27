package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.AttentionMetadata;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/** Which tokens of a batch the tensor-core prefill takes, and how they fall into tiles. Needs no GPU. */
class PrefillTilesTest {
    private static final int BLOCK = 16;

    /** A batch of these sequences' new-token counts, each after {@code cached} tokens, in that order. */
    private static AttentionBatch batch(int cached, int... lengths) {
        int[] queryStart = new int[lengths.length + 1];
        int[] context = new int[lengths.length];
        int[][] tables = new int[lengths.length][];
        int tokens = IntStream.of(lengths).sum();
        int[] slots = new int[tokens];
        for (int s = 0, block = 0; s < lengths.length; s++) {
            queryStart[s + 1] = queryStart[s] + lengths[s];
            context[s] = cached + lengths[s];
            tables[s] = IntStream.range(block, block + Math.ceilDiv(context[s], BLOCK)).toArray();
            block += tables[s].length;
            for (int j = 0; j < lengths[s]; j++) {
                int position = cached + j;
                slots[queryStart[s] + j] = tables[s][position / BLOCK] * BLOCK + position % BLOCK;
            }
        }
        return AttentionBatch.pack(new AttentionMetadata(queryStart, context, tables, slots), 4096, BLOCK);
    }

    @Test
    void theChunksAtTheEndOfAMixedBatchAreCutIntoTilesOfSixteen() {
        // A verification of 4 and a decode token first (the split kernel's), then a chunk of 38.
        PrefillTiles tiles = PrefillTiles.of(batch(100, 4, 1, 38), 16);
        assertEquals(5, tiles.first());
        assertArrayEquals(new int[] {5, 16, 21, 16, 37, 6}, tiles.tiles());
        assertEquals(3, tiles.count());
    }

    @Test
    void tilesNeverStraddleTwoSequences() {
        PrefillTiles tiles = PrefillTiles.of(batch(0, 20, 33), 16);
        assertEquals(0, tiles.first());
        assertArrayEquals(new int[] {0, 16, 16, 4, 20, 16, 36, 16, 52, 1}, tiles.tiles());
    }

    @Test
    void onlyAWholeRunOfLongSequencesAtTheEndQualifies() {
        // A short sequence last: nothing (the split kernel keeps the batch in one launch).
        assertNull(PrefillTiles.of(batch(0, 40, 3), 16));
        // A short sequence between two long ones: only the last one.
        assertEquals(43, PrefillTiles.of(batch(0, 40, 3, 17), 16).first());
        // Decode tokens only: nothing.
        assertNull(PrefillTiles.of(batch(50, 1, 1, 1), 16));
    }

    @Test
    void aShortChunkOfALongPromptCutsItsContextToFillTheDevice() {
        // 512 tokens after 7,680 cached: 32 tiles, 64 blocks of 2 KV heads; 132 SMs take 264: 4 chunks of 2,048 keys.
        PrefillTiles chunk = PrefillTiles.of(batch(7680, 512), 16);
        assertEquals(512, chunk.tokens());
        assertEquals(8192, chunk.longest());
        assertEquals(new PrefillTiles.ContextSplit(4, 2048), chunk.splits(2, 132));
        assertEquals(512L * 12 * 4 * 132 * 4, chunk.partialBytes(12, chunk.splits(2, 132)));
        // A whole 2,048-token prompt: 256 blocks fill the device already.
        PrefillTiles prompt = PrefillTiles.of(batch(0, 2048), 16);
        assertEquals(new PrefillTiles.ContextSplit(1, 2048), prompt.splits(2, 132));
        assertEquals(0, prompt.partialBytes(12, prompt.splits(2, 132)));
        // Never chunks of fewer than 256 keys: a 300-token context stays whole, one of 600 is cut in two.
        assertEquals(new PrefillTiles.ContextSplit(1, 320), PrefillTiles.of(batch(0, 300), 16).splits(2, 132));
        assertEquals(new PrefillTiles.ContextSplit(2, 320), PrefillTiles.of(batch(0, 600), 16).splits(2, 132));
    }

    @Test
    void theKernelTakesBf16CachesOf128WideHeadsAndAtMostEightQueryHeadsAKvHead() {
        assertTrue(PrefillTiles.fits(12, 2, 128, 128, false, true));
        assertTrue(PrefillTiles.fits(64, 8, 128, 128, false, true));
        assertFalse(PrefillTiles.fits(12, 2, 128, 128, false, false)); // f32 cache
        assertFalse(PrefillTiles.fits(12, 2, 64, 64, false, true));
        assertFalse(PrefillTiles.fits(16, 1, 576, 512, true, true)); // MLA's latent cache
        assertFalse(PrefillTiles.fits(32, 2, 128, 128, false, true)); // 16 query heads a KV head
        assertFalse(PrefillTiles.fits(12, 5, 128, 128, false, true));
    }
}
