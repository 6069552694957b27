package dev.kiln.models.testing;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;

/**
 * Hands out the blocks of a cache in a scrambled order, so that every sequence's block table is non-contiguous
 * and out of order, as it is under a real block manager after some churn.
 */
public final class BlockPool {
    private final List<Integer> free = new ArrayList<>();

    public BlockPool(int numBlocks, long seed) {
        for (int b = 0; b < numBlocks; b++) free.add(b);
        Collections.shuffle(free, new Random(seed));
    }

    /** Blocks enough for {@code tokens} tokens. */
    public int[] forTokens(int tokens, int blockSize) {
        return take((tokens + blockSize - 1) / blockSize);
    }

    /** The next {@code n} blocks. */
    public int[] take(int n) {
        if (n > free.size()) throw new IllegalStateException("only " + free.size() + " blocks left, " + n + " wanted");
        int[] blocks = new int[n];
        for (int i = 0; i < n; i++) blocks[i] = free.removeLast();
        return blocks;
    }
}
