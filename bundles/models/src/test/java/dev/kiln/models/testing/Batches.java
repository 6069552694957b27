package dev.kiln.models.testing;

import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.model.ForwardBatch;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.IntStream;

/**
 * Builds multi-sequence forward batches the way an engine would: sequence after sequence, each with its own
 * cached length, query tokens and block table.
 */
public final class Batches {
    private final int blockSize;
    private final List<Part> parts = new ArrayList<>();

    /** One sequence's share of a batch: its block table, tokens already cached, new tokens, and logit rows wanted. */
    private record Part(int[] blocks, int cached, int[] tokens, boolean everyLogit) {}

    public Batches(int blockSize) {
        this.blockSize = blockSize;
    }

    /** Adds a sequence whose last query token needs logits. */
    public Batches add(int[] blocks, int cached, int[] tokens) {
        parts.add(new Part(blocks, cached, tokens, false));
        return this;
    }

    /** Adds a sequence all of whose query tokens need logits (a verification step). */
    public Batches addEveryLogit(int[] blocks, int cached, int[] tokens) {
        parts.add(new Part(blocks, cached, tokens, true));
        return this;
    }

    /** The batch, with hidden states of the logit rows when asked. */
    public ForwardBatch build(boolean hiddenStates) {
        int total = parts.stream().mapToInt(p -> p.tokens.length).sum();
        int[] tokens = new int[total];
        int[] positions = new int[total];
        int[] slots = new int[total];
        int[] queryStart = new int[parts.size() + 1];
        int[] context = new int[parts.size()];
        int[][] tables = new int[parts.size()][];
        List<Integer> logitRows = new ArrayList<>();
        int row = 0;
        for (int s = 0; s < parts.size(); s++) {
            Part p = parts.get(s);
            queryStart[s] = row;
            context[s] = p.cached + p.tokens.length;
            tables[s] = Arrays.copyOf(p.blocks, (context[s] + blockSize - 1) / blockSize);
            for (int j = 0; j < p.tokens.length; j++, row++) {
                int position = p.cached + j;
                tokens[row] = p.tokens[j];
                positions[row] = position;
                slots[row] = p.blocks[position / blockSize] * blockSize + position % blockSize;
                if (p.everyLogit || j == p.tokens.length - 1) logitRows.add(row);
            }
        }
        queryStart[parts.size()] = row;
        return new ForwardBatch(tokens, positions, new AttentionMetadata(queryStart, context, tables, slots),
                logitRows.stream().mapToInt(Integer::intValue).toArray(), hiddenStates);
    }

    /** {@code 0, 1, ..., n-1}. */
    public static int[] range(int n) {
        return IntStream.range(0, n).toArray();
    }
}
