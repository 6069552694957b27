package dev.kiln.engine.drafting;

import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.model.ForwardBatch;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The forward batch of a proposer's step: consecutive positions of several sequences of a {@link DraftCache},
 * each run after its cached positions, with a logit row wherever one is asked for.
 */
public final class DraftBatch {
    private final DraftCache cache;
    private final int capacity;
    private final List<DraftCache.Entry> sequences = new ArrayList<>();
    private final List<Integer> starts = new ArrayList<>();
    private int[] tokens;
    private int[] positions;
    private int[] slots;
    private int[] logitRows;
    private int size;
    private int rows;

    /** @param capacity the most tokens the batch takes (the model's workspace) */
    public DraftBatch(DraftCache cache, int capacity) {
        this.cache = cache;
        this.capacity = capacity;
        this.tokens = new int[capacity];
        this.positions = new int[capacity];
        this.slots = new int[capacity];
        this.logitRows = new int[capacity];
    }

    /** Tokens in the batch so far. */
    public int size() {
        return size;
    }

    /** Room left. */
    public int room() {
        return capacity - size;
    }

    /** Logit rows asked for so far. */
    public int logitRows() {
        return rows;
    }

    /**
     * Adds {@code count} tokens of a sequence at positions {@code start ..}, which must directly follow what the
     * sequence has in the cache (or the tokens added just before for it); its blocks must be reserved.
     *
     * @param logitForLast whether the last of them needs logits
     * @return the index of its logit row, or -1
     */
    public int add(DraftCache.Entry entry, int[] source, int from, int count, int start, boolean logitForLast) {
        if (count <= 0) throw new IllegalArgumentException("nothing to add");
        if (count > room()) throw new IllegalArgumentException(count + " tokens, room for " + room());
        int last = sequences.isEmpty() ? -1 : sequences.size() - 1;
        if (last < 0 || sequences.get(last) != entry) {
            sequences.add(entry);
            starts.add(size);
        }
        for (int j = 0; j < count; j++) {
            tokens[size + j] = source[from + j];
            positions[size + j] = start + j;
            slots[size + j] = cache.slot(entry, start + j);
        }
        size += count;
        if (!logitForLast) return -1;
        logitRows[rows] = size - 1;
        return rows++;
    }

    /** The forward batch of what was added. */
    public ForwardBatch build(boolean hiddenStates) {
        int n = sequences.size();
        int[] queryStart = new int[n + 1];
        int[] context = new int[n];
        int[][] tables = new int[n][];
        for (int i = 0; i < n; i++) {
            queryStart[i] = starts.get(i);
            int end = i + 1 < n ? starts.get(i + 1) : size;
            context[i] = positions[end - 1] + 1;
            tables[i] = cache.blockTable(sequences.get(i), context[i]);
        }
        queryStart[n] = size;
        var attention = new AttentionMetadata(queryStart, context, tables, Arrays.copyOf(slots, size));
        return new ForwardBatch(Arrays.copyOf(tokens, size), Arrays.copyOf(positions, size), attention,
                Arrays.copyOf(logitRows, rows), hiddenStates);
    }

    /** Empties the batch for the next forward. */
    public void clear() {
        sequences.clear();
        starts.clear();
        size = 0;
        rows = 0;
    }
}
