package dev.kiln.api.backend;

import java.util.Arrays;

/**
 * Tokens a backend is choosing where the logits are ({@link ComputeBackend#argmaxRowsPending},
 * {@link ComputeBackend#sampleRowsPending}), one per logits row, that the host has not necessarily read yet.
 *
 * <p>Why: on a GPU, reading the tokens back waits for the whole step, and until the host has them it cannot queue
 * the next step, so the GPU idles for the read, the host's bookkeeping and the next step's launches. An engine that
 * holds a step's tokens pending instead queues the next step first, feeding it the pending tokens where the device
 * holds them ({@link ComputeBackend#embed(Weight, int[], PendingTokens, Tensor)}), and only then waits: the GPU runs
 * one step while the host prepares the next.
 *
 * <p>Not thread-safe: one engine thread queues, feeds and awaits.
 *
 * @since 1.5
 */
public interface PendingTokens {
    /** How many tokens: one per row of the logits they were chosen from. */
    int count();

    /**
     * Waits until the tokens are chosen and returns them, row by row; later calls return equal values at once.
     *
     * @throws RuntimeException if the work that chooses them failed (a backend's own exception type)
     */
    int[] await();

    /**
     * The id that stands for row {@code row} of a step's pending tokens in a batch's token ids: {@code -1 - row},
     * never a vocabulary id.
     */
    static int placeholder(int row) {
        if (row < 0) throw new IllegalArgumentException("row " + row);
        return -1 - row;
    }

    /** The row a {@link #placeholder} stands for. */
    static int rowOf(int placeholder) {
        if (placeholder >= 0) throw new IllegalArgumentException(placeholder + " is a token id, not a placeholder");
        return -1 - placeholder;
    }

    /**
     * The ids with every placeholder replaced by the pending token it stands for (waiting for them if there is one);
     * the same array when there is none.
     *
     * @throws IllegalArgumentException if a placeholder stands for a row past {@code pending.count()}, or there are
     *                                  placeholders and no pending tokens
     */
    static int[] resolve(int[] ids, PendingTokens pending) {
        int[] resolved = null;
        int[] chosen = null;
        for (int t = 0; t < ids.length; t++) {
            if (ids[t] >= 0) continue;
            int row = rowOf(ids[t]);
            if (pending == null || row >= pending.count()) {
                throw new IllegalArgumentException("token id " + ids[t] + " stands for pending row " + row + " of "
                        + (pending == null ? "no pending tokens" : pending.count() + " pending tokens"));
            }
            if (resolved == null) {
                resolved = ids.clone();
                chosen = pending.await();
            }
            resolved[t] = chosen[row];
        }
        return resolved == null ? ids : resolved;
    }

    /** Tokens already chosen. */
    static PendingTokens of(int[] chosen) {
        int[] copy = chosen.clone();
        return new PendingTokens() {
            @Override
            public int count() {
                return copy.length;
            }

            @Override
            public int[] await() {
                return copy.clone();
            }

            @Override
            public String toString() {
                return "chosen tokens " + Arrays.toString(copy);
            }
        };
    }
}
