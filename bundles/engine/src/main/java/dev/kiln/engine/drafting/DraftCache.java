package dev.kiln.engine.drafting;

import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.Collection;
import java.util.Deque;
import java.util.LinkedHashMap;

/**
 * Which blocks of a proposer's own paged KV cache hold which sequence, and what each sequence's cached entries were
 * computed from. Blocks are private to a sequence (proposers share no prefixes); a sequence keeps its blocks when
 * it rolls back, and gives them up when released or evicted. When blocks run out, the sequences drafted least
 * recently give theirs up first; a sequence evicted that way simply starts over when it drafts again.
 *
 * <p>Not thread-safe: a draft session uses it from the engine thread only.
 */
public final class DraftCache {
    /** One sequence's share of the cache. */
    public static final class Entry {
        private final String key;
        private int[] tokens = new int[0];
        private int known;
        private int cached;
        private int[] blocks = new int[0];
        private int blockCount;

        private Entry(String key) {
            this.key = key;
        }

        /** The sequence's key. */
        public String key() {
            return key;
        }

        /** Positions whose cache entries are valid, from position 0. */
        public int cached() {
            return cached;
        }

        /** Records that positions {@code 0 .. cached - 1} hold valid entries. */
        public void cached(int positions) {
            if (positions < 0) throw new IllegalArgumentException("negative length " + positions);
            cached = positions;
        }

        /** The tokens the valid entries were computed from ({@link #knownTokens()} of them). */
        public int[] tokens() {
            return tokens;
        }

        /** How many of {@link #tokens()} are meaningful. */
        public int knownTokens() {
            return known;
        }

        /** Remembers the tokens the entries are computed from (copied). */
        public void tokens(int[] source, int length) {
            if (tokens.length < length) tokens = Arrays.copyOf(source, Math.max(length, tokens.length * 2));
            else System.arraycopy(source, 0, tokens, 0, length);
            known = length;
        }

        /** Appends one token to {@link #tokens()}. */
        public void append(int token) {
            if (known == tokens.length) tokens = Arrays.copyOf(tokens, Math.max(16, tokens.length * 2));
            tokens[known++] = token;
        }

        /**
         * How many leading tokens of {@code current} agree with the remembered ones: entries computed from
         * tokens beyond that point are stale (rejected drafts, another continuation).
         */
        public int agreement(int[] current) {
            int n = Math.min(known, current.length);
            int i = Arrays.mismatch(tokens, 0, n, current, 0, n);
            return i < 0 ? n : i;
        }
    }

    private final int numBlocks;
    private final int blockSize;
    private final Deque<Integer> free = new ArrayDeque<>();
    /** Sequences in order of last use, least recent first. */
    private final LinkedHashMap<String, Entry> entries = new LinkedHashMap<>(16, 0.75f, true);

    /**
     * @param numBlocks blocks in the proposer's cache
     * @param blockSize token slots per block
     */
    public DraftCache(int numBlocks, int blockSize) {
        if (numBlocks < 1 || blockSize < 1) throw new IllegalArgumentException(numBlocks + " blocks of " + blockSize);
        this.numBlocks = numBlocks;
        this.blockSize = blockSize;
        for (int b = 0; b < numBlocks; b++) free.add(b);
    }

    /** Token slots per block. */
    public int blockSize() {
        return blockSize;
    }

    /** Blocks in the cache. */
    public int numBlocks() {
        return numBlocks;
    }

    /** Blocks no sequence holds. */
    public int freeBlocks() {
        return free.size();
    }

    /** Sequences holding state. */
    public int sequences() {
        return entries.size();
    }

    /** The sequence's entry, created empty on first use; marks it most recently used. */
    public Entry entry(String key) {
        return entries.computeIfAbsent(key, Entry::new);
    }

    /**
     * Gives the sequence blocks for {@code tokens} positions, evicting the least recently used sequences other
     * than those in {@code keep} when the free blocks do not suffice. Returns false (and changes nothing) when
     * even that is not enough.
     */
    public boolean reserve(Entry entry, int tokens, Collection<Entry> keep) {
        int needed = (tokens + blockSize - 1) / blockSize - entry.blockCount;
        if (needed <= 0) return true;
        if (needed > free.size()) {
            int evictable = free.size();
            for (Entry e : entries.values()) {
                if (e != entry && !keep.contains(e)) evictable += e.blockCount;
            }
            if (evictable < needed) return false;
            var victims = entries.values().iterator();
            while (free.size() < needed) {
                Entry victim = victims.next();
                if (victim == entry || keep.contains(victim)) continue;
                victims.remove();
                giveBack(victim);
            }
        }
        if (entry.blocks.length < entry.blockCount + needed) {
            entry.blocks = Arrays.copyOf(entry.blocks, Math.max(entry.blockCount + needed, entry.blocks.length * 2));
        }
        for (int i = 0; i < needed; i++) entry.blocks[entry.blockCount++] = free.poll();
        return true;
    }

    /** The cache slot of a position the sequence has blocks for. */
    public int slot(Entry entry, int position) {
        int index = position / blockSize;
        if (index >= entry.blockCount) throw new IllegalArgumentException("position " + position + " has no block");
        return entry.blocks[index] * blockSize + position % blockSize;
    }

    /** The sequence's block ids covering {@code tokens} positions, in order. */
    public int[] blockTable(Entry entry, int tokens) {
        return Arrays.copyOf(entry.blocks, (tokens + blockSize - 1) / blockSize);
    }

    /** Forgets a sequence and frees its blocks; unknown keys are ignored. */
    public void release(String key) {
        Entry e = entries.remove(key);
        if (e != null) giveBack(e);
    }

    /**
     * A finished sequence: its entries stay, for {@link #donorFor} to find, until their blocks are needed; a
     * sequence with no valid entries is forgotten at once.
     */
    public void retire(String key) {
        Entry e = entries.get(key);
        if (e != null && e.cached == 0) release(key);
    }

    /**
     * Another sequence whose valid entries cover the longest prefix of {@code tokens} (a prompt that started the
     * same way, finished or not), and how many leading tokens it shares; null when none shares any.
     */
    public Donor donorFor(Entry entry, int[] tokens) {
        Entry best = null;
        int bestAgreement = 0;
        for (Entry e : entries.values()) {
            if (e == entry || e.cached == 0) continue;
            int agreement = e.agreement(tokens);
            if (agreement > bestAgreement) {
                best = e;
                bestAgreement = agreement;
            }
        }
        return best == null ? null : new Donor(best, bestAgreement);
    }

    /**
     * A sequence to copy cache entries from.
     *
     * @param entry     its share of the cache
     * @param agreement how many leading tokens it shares with the sequence asking
     */
    public record Donor(Entry entry, int agreement) {}

    /**
     * The block pairs that copy the first {@code positions} positions of {@code from} into {@code to} (whose blocks
     * must be reserved): {@code [sources, destinations]}, for {@link dev.kiln.api.attention.KvCache#copyBlocks}.
     */
    public int[][] copyPlan(Entry from, Entry to, int positions) {
        int blocks = (positions + blockSize - 1) / blockSize;
        if (blocks > from.blockCount || blocks > to.blockCount) {
            throw new IllegalArgumentException("copying " + positions + " positions needs " + blocks + " blocks");
        }
        return new int[][] {Arrays.copyOf(from.blocks, blocks), Arrays.copyOf(to.blocks, blocks)};
    }

    /** Forgets every sequence. */
    public void clear() {
        for (Entry e : entries.values()) giveBack(e);
        entries.clear();
    }

    private void giveBack(Entry e) {
        for (int i = 0; i < e.blockCount; i++) free.add(e.blocks[i]);
        e.blockCount = 0;
        e.cached = 0;
        e.known = 0;
    }

}
