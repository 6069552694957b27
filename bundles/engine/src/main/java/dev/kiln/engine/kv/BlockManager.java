package dev.kiln.engine.kv;

import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

/**
 * Hands out the KV cache's fixed-size blocks to sequences and keeps the prefix cache (vLLM's block manager).
 *
 * <p>Every block has a reference count: the sequences whose block tables hold it. A full block whose tokens are
 * known is registered under its {@link PrefixHash} (its tokens chained with its whole prefix); a later sequence
 * with the same prefix takes the block instead of recomputing it, and shares it. When its last user lets go, a
 * registered block stays registered while it waits in the free queue, and is only forgotten when the queue hands
 * it out again: blocks are reused least recently freed first, and blocks worth nothing (not registered) before
 * any registered one.
 *
 * <p>A sequence frees its blocks last block first, so the tail of a freed prompt is evicted before its head,
 * which more requests share.
 *
 * <p>Owned by the engine thread; only {@link #usedBlocks()} may be read from others.
 */
public final class BlockManager {
    private static final int NONE = -1;

    private final int numBlocks;
    private final int blockSize;
    private final int[] refCount;
    /** Registered blocks: their hash, their parent's hash and their tokens, to confirm a hit. */
    private final boolean[] registered;
    private final long[] hash;
    private final long[] parentHash;
    private final int[] contents;
    private final Map<Long, Integer> byHash = new HashMap<>();
    /** The free queue, a doubly linked list over block ids: blocks are taken from the head. */
    private final int[] prev;
    private final int[] next;
    private int head = NONE;
    private int tail = NONE;
    private int freeCount;
    private volatile int usedBlocks;

    /**
     * @param numBlocks blocks in the cache
     * @param blockSize token slots per block
     */
    public BlockManager(int numBlocks, int blockSize) {
        if (numBlocks < 1 || blockSize < 1) {
            throw new IllegalArgumentException("need at least one block of one slot, got " + numBlocks + " x " + blockSize);
        }
        this.numBlocks = numBlocks;
        this.blockSize = blockSize;
        this.refCount = new int[numBlocks];
        this.registered = new boolean[numBlocks];
        this.hash = new long[numBlocks];
        this.parentHash = new long[numBlocks];
        this.contents = new int[Math.multiplyExact(numBlocks, blockSize)];
        this.prev = new int[numBlocks];
        this.next = new int[numBlocks];
        for (int b = 0; b < numBlocks; b++) appendFree(b);
    }

    /** Blocks in the cache. */
    public int numBlocks() {
        return numBlocks;
    }

    /** Token slots per block. */
    public int blockSize() {
        return blockSize;
    }

    /** Blocks that some sequence holds (readable from any thread). */
    public int usedBlocks() {
        return usedBlocks;
    }

    /** Blocks no sequence holds, prefix-cached ones included (they are evicted on demand). */
    public int freeBlocks() {
        return freeCount;
    }

    /** Registered (prefix-cached) blocks, held or free. */
    public int cachedBlocks() {
        return byHash.size();
    }

    /** Blocks needed to hold {@code tokens} tokens. */
    public int blocksFor(int tokens) {
        return (tokens + blockSize - 1) / blockSize;
    }

    /**
     * The blocks holding the longest cached prefix of {@code tokens[0 .. length)} in whole blocks, leaving at least
     * {@code length - maxCachedTokens} tokens to compute. Nothing is taken: pass the result to {@link #allocate}.
     */
    public int[] findCachedPrefix(int[] tokens, int length, int maxCachedTokens) {
        int candidates = Math.min(length, maxCachedTokens) / blockSize;
        int[] hits = new int[candidates];
        int found = 0;
        long parent = PrefixHash.ROOT;
        for (int i = 0; i < candidates; i++) {
            long h = PrefixHash.of(parent, tokens, i * blockSize, blockSize);
            Integer block = byHash.get(h);
            if (block == null || !holds(block, parent, tokens, i * blockSize)) break;
            hits[found++] = block;
            parent = h;
        }
        return found == hits.length ? hits : Arrays.copyOf(hits, found);
    }

    /**
     * Whether the table can grow to hold {@code tokens} tokens, first taking the cached blocks {@code hits} (only
     * for an empty table), without evicting a block some sequence holds.
     */
    public boolean canAllocate(BlockTable table, int tokens, int[] hits) {
        int needed = blocksFor(tokens) - table.size() - hits.length;
        int hitsInFreeQueue = 0;
        for (int b : hits) {
            if (refCount[b] == 0) hitsInFreeQueue++;
        }
        return Math.max(0, needed) <= freeCount - hitsInFreeQueue;
    }

    /**
     * Grows the table to hold {@code tokens} tokens: first the cached prefix blocks {@code hits} (the table must be
     * empty then), shared, then fresh blocks from the free queue, evicting their cached contents.
     *
     * @throws IllegalStateException when there are not enough free blocks (check {@link #canAllocate} first)
     */
    public void allocate(BlockTable table, int tokens, int[] hits) {
        if (!canAllocate(table, tokens, hits)) {
            throw new IllegalStateException("not enough free KV blocks for " + tokens + " tokens");
        }
        if (hits.length > 0) {
            if (table.size() != 0) throw new IllegalArgumentException("cached prefix blocks go into an empty table");
            for (int b : hits) {
                acquire(b);
                table.add(b);
                table.recordHash(hash[b]);
            }
        }
        while (table.size() < blocksFor(tokens)) {
            int b = head;
            unlinkFree(b);
            if (registered[b]) forget(b);
            acquire(b);
            table.add(b);
        }
    }

    /**
     * Registers the table's blocks that became full since the last call, now that their tokens are computed:
     * {@code tokens[0 .. computed)} are in the cache.
     */
    public void registerFullBlocks(BlockTable table, int[] tokens, int computed) {
        int full = Math.min(computed / blockSize, table.size());
        for (int i = table.hashedBlocks(); i < full; i++) {
            long parent = table.lastHash();
            long h = PrefixHash.of(parent, tokens, i * blockSize, blockSize);
            int b = table.get(i);
            // Another sequence may have computed the same prefix in the same step: the first one stays cached and
            // this copy stays private (it is freed like any unregistered block).
            if (!registered[b] && !byHash.containsKey(h)) {
                registered[b] = true;
                hash[b] = h;
                parentHash[b] = parent;
                System.arraycopy(tokens, i * blockSize, contents, b * blockSize, blockSize);
                byHash.put(h, b);
            }
            table.recordHash(h);
        }
    }

    /**
     * Shrinks the table to the blocks that hold its first {@code tokens} tokens, releasing the rest: the slots of
     * rejected speculative tokens. Their contents need no clearing; they are overwritten before being read again.
     */
    public void truncate(BlockTable table, int tokens) {
        int keep = blocksFor(tokens);
        if (keep >= table.size()) return;
        for (int i = table.size() - 1; i >= keep; i--) release(table.get(i));
        table.truncate(keep);
    }

    /** Releases every block of the table, last block first, and empties it. */
    public void free(BlockTable table) {
        for (int i = table.size() - 1; i >= 0; i--) release(table.get(i));
        table.clear();
    }

    private void release(int b) {
        if (--refCount[b] == 0) {
            usedBlocks--;
            if (registered[b]) appendFree(b); else prependFree(b);
        } else if (refCount[b] < 0) {
            throw new IllegalStateException("block " + b + " freed more often than taken");
        }
    }

    /** The reference count of a block (for tests and diagnostics). */
    public int refCount(int block) {
        return refCount[block];
    }

    private boolean holds(int block, long parent, int[] tokens, int from) {
        if (!registered[block] || parentHash[block] != parent) return false;
        return Arrays.equals(contents, block * blockSize, (block + 1) * blockSize, tokens, from, from + blockSize);
    }

    private void acquire(int b) {
        if (refCount[b]++ == 0) {
            if (isFree(b)) unlinkFree(b);
            usedBlocks++;
        }
    }

    private void forget(int b) {
        byHash.remove(hash[b], b);
        registered[b] = false;
    }

    private boolean isFree(int b) {
        return prev[b] != NONE || head == b;
    }

    private void appendFree(int b) {
        prev[b] = tail;
        next[b] = NONE;
        if (tail == NONE) head = b; else next[tail] = b;
        tail = b;
        freeCount++;
    }

    private void prependFree(int b) {
        next[b] = head;
        prev[b] = NONE;
        if (head == NONE) tail = b; else prev[head] = b;
        head = b;
        freeCount++;
    }

    private void unlinkFree(int b) {
        if (prev[b] == NONE) head = next[b]; else next[prev[b]] = next[b];
        if (next[b] == NONE) tail = prev[b]; else prev[next[b]] = prev[b];
        prev[b] = NONE;
        next[b] = NONE;
        freeCount--;
    }
}
