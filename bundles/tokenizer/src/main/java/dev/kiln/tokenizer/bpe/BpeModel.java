package dev.kiln.tokenizer.bpe;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A merge-rank BPE model: splits one pre-tokenized word into vocabulary ids by repeatedly joining the adjacent
 * pair whose merge rule has the lowest rank (leftmost first among equals), exactly as the Hugging Face
 * {@code tokenizers} library does. Words seen before come from a bounded cache. Thread-safe.
 */
public final class BpeModel {
    /** Words longer than this are not cached: they are rare and would crowd out the common ones. */
    private static final int MAX_CACHED_WORD_LENGTH = 256;
    private static final int[] NO_IDS = new int[0];

    private final Map<String, Integer> vocab;
    private final String[] tokens;
    private final MergeTable merges;
    private final int[] singleCharIds;
    private final boolean ignoreMerges;
    private final int unknownId;
    private final boolean fuseUnknown;
    private final int[] byteFallbackIds;
    private final int cacheCapacity;
    private final ConcurrentHashMap<String, int[]> cache = new ConcurrentHashMap<>();

    /**
     * @param vocab         token string to id
     * @param merges        merge rules in rank order, each the two token strings joined
     * @param unknownToken  the token for characters outside the vocabulary, or null to drop them
     * @param fuseUnknown   whether consecutive unknown characters become one unknown token
     * @param byteFallback  whether characters outside the vocabulary become {@code <0xXX>} byte tokens
     * @param ignoreMerges  whether a word that is itself in the vocabulary is taken whole without merging
     * @param cacheCapacity words to remember (0 disables the cache)
     * @throws IllegalArgumentException when a merge names a token outside the vocabulary
     */
    public BpeModel(Map<String, Integer> vocab, List<String[]> merges, String unknownToken, boolean fuseUnknown,
                    boolean byteFallback, boolean ignoreMerges, int cacheCapacity) {
        this.vocab = Map.copyOf(vocab);
        int maxId = vocab.values().stream().mapToInt(Integer::intValue).max().orElse(-1);
        this.tokens = new String[maxId + 1];
        vocab.forEach((token, id) -> tokens[id] = token);
        this.singleCharIds = new int[Character.MAX_VALUE + 1];
        Arrays.fill(singleCharIds, -1);
        vocab.forEach((token, id) -> {
            if (token.length() == 1) {
                singleCharIds[token.charAt(0)] = id;
            }
        });
        this.merges = new MergeTable(merges.size());
        for (int rank = 0; rank < merges.size(); rank++) {
            String[] pair = merges.get(rank);
            Integer left = vocab.get(pair[0]);
            Integer right = vocab.get(pair[1]);
            Integer merged = vocab.get(pair[0] + pair[1]);
            if (left == null || right == null || merged == null) {
                throw new IllegalArgumentException("merge " + rank + " (" + pair[0] + " " + pair[1]
                        + ") names a token that is not in the vocabulary");
            }
            this.merges.put(left, right, rank, merged);
        }
        if (unknownToken != null && !vocab.containsKey(unknownToken)) {
            throw new IllegalArgumentException("unknown token " + unknownToken + " is not in the vocabulary");
        }
        this.unknownId = unknownToken == null ? -1 : vocab.get(unknownToken);
        this.fuseUnknown = fuseUnknown;
        this.ignoreMerges = ignoreMerges;
        if (byteFallback) {
            byteFallbackIds = new int[256];
            for (int b = 0; b < 256; b++) {
                byteFallbackIds[b] = vocab.getOrDefault(String.format("<0x%02X>", b), -1);
            }
        } else {
            byteFallbackIds = null;
        }
        this.cacheCapacity = cacheCapacity;
    }

    /** Number of entries of the vocabulary. */
    public int size() {
        return vocab.size();
    }

    /** One more than the highest id of the vocabulary. */
    public int idLimit() {
        return tokens.length;
    }

    /** The id of a vocabulary token, or -1. */
    public int id(String token) {
        Integer id = vocab.get(token);
        return id == null ? -1 : id;
    }

    /** The token string of an id, or null when the vocabulary has no such id. */
    public String token(int id) {
        return id >= 0 && id < tokens.length ? tokens[id] : null;
    }

    /** Number of merge rules. */
    public int mergeCount() {
        return merges.size();
    }

    /** Appends the ids of one word. */
    public void tokenize(String word, IntSink out) {
        Objects.requireNonNull(word);
        if (word.isEmpty()) {
            return;
        }
        if (ignoreMerges) {
            Integer whole = vocab.get(word);
            if (whole != null) {
                out.add(whole);
                return;
            }
        }
        boolean cacheable = cacheCapacity > 0 && word.length() <= MAX_CACHED_WORD_LENGTH;
        int[] ids = cacheable ? cache.get(word) : null;
        if (ids == null) {
            ids = merge(word);
            if (cacheable) {
                if (cache.size() >= cacheCapacity) {
                    cache.clear();
                }
                cache.put(word, ids);
            }
        }
        for (int id : ids) {
            out.add(id);
        }
    }

    private int[] merge(String word) {
        int[] ids = initialSymbols(word);
        int n = ids.length;
        if (n < 2) {
            return ids;
        }
        // Symbols form a linked list over their original positions; a merged-away symbol has prev = -2.
        int[] prev = new int[n];
        int[] next = new int[n];
        for (int i = 0; i < n; i++) {
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }
        LongMinHeap queue = new LongMinHeap(n);
        for (int i = 0; i + 1 < n; i++) {
            int slot = merges.find(ids[i], ids[i + 1]);
            if (slot >= 0) {
                queue.push(entry(merges.rank(slot), i));
            }
        }
        int alive = n;
        while (!queue.isEmpty()) {
            long top = queue.pop();
            int rank = (int) (top >>> 32);
            int pos = (int) top;
            if (prev[pos] == -2 || next[pos] < 0) {
                continue;
            }
            int right = next[pos];
            int slot = merges.find(ids[pos], ids[right]);
            // A stale entry: one side has changed since the pair was queued.
            if (slot < 0 || merges.rank(slot) != rank) {
                continue;
            }
            ids[pos] = merges.mergedId(slot);
            next[pos] = next[right];
            if (next[pos] >= 0) {
                prev[next[pos]] = pos;
            }
            prev[right] = -2;
            alive--;
            if (prev[pos] >= 0) {
                int before = prev[pos];
                int s = merges.find(ids[before], ids[pos]);
                if (s >= 0) {
                    queue.push(entry(merges.rank(s), before));
                }
            }
            if (next[pos] >= 0) {
                int s = merges.find(ids[pos], ids[next[pos]]);
                if (s >= 0) {
                    queue.push(entry(merges.rank(s), pos));
                }
            }
        }
        int[] result = new int[alive];
        int k = 0;
        for (int i = 0; i >= 0; i = next[i]) {
            result[k++] = ids[i];
        }
        return result;
    }

    private static long entry(int rank, int pos) {
        return ((long) rank << 32) | pos;
    }

    /** One symbol per character, mapped to the vocabulary; characters outside it become unknown or byte tokens. */
    private int[] initialSymbols(String word) {
        int[] ids = new int[word.length()];
        int n = 0;
        boolean previousUnknown = false;
        for (int i = 0; i < word.length(); ) {
            char c = word.charAt(i);
            int id;
            int width = 1;
            if (Character.isHighSurrogate(c) && i + 1 < word.length() && Character.isLowSurrogate(word.charAt(i + 1))) {
                width = 2;
                Integer boxed = vocab.get(word.substring(i, i + 2));
                id = boxed == null ? -1 : boxed;
            } else {
                id = singleCharIds[c];
            }
            if (id >= 0) {
                ids[n++] = id;
                previousUnknown = false;
            } else if (byteFallbackIds != null && allBytesKnown(word.substring(i, i + width))) {
                for (byte b : word.substring(i, i + width).getBytes(java.nio.charset.StandardCharsets.UTF_8)) {
                    if (n == ids.length) {
                        ids = Arrays.copyOf(ids, ids.length * 2 + 4);
                    }
                    ids[n++] = byteFallbackIds[b & 0xFF];
                }
                previousUnknown = false;
            } else if (unknownId >= 0) {
                if (!(fuseUnknown && previousUnknown)) {
                    ids[n++] = unknownId;
                }
                previousUnknown = true;
            }
            i += width;
        }
        return n == ids.length ? ids : Arrays.copyOf(ids, n);
    }

    private boolean allBytesKnown(String character) {
        for (byte b : character.getBytes(java.nio.charset.StandardCharsets.UTF_8)) {
            if (byteFallbackIds[b & 0xFF] < 0) {
                return false;
            }
        }
        return true;
    }

    /** A growable receiver of token ids. */
    public interface IntSink {
        void add(int id);
    }
}
