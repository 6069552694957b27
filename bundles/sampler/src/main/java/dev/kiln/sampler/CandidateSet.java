package dev.kiln.sampler;

/**
 * The tokens still eligible at one sampling step, with their logits and unnormalised probabilities, held in
 * arrays reused from step to step (a 150k vocabulary would otherwise cost megabytes of garbage per token).
 *
 * <p>Truncations never sort the vocabulary: top-k is a quickselect, top-p a quickselect weighted by probability
 * mass, both expected linear time. Tokens are ranked by logit, descending, ties broken by the lower token id, so
 * every operation is deterministic and the same ranking is used by all of them.
 *
 * <p>Not thread-safe: one instance per thread.
 */
final class CandidateSet {
    private int[] ids = new int[0];
    private float[] logits = new float[0];
    private double[] weights = new double[0];
    private int size;
    private double total;

    /** Number of candidates. */
    int size() {
        return size;
    }

    /** Token id of candidate i. */
    int id(int i) {
        return ids[i];
    }

    /** Unnormalised probability of candidate i (valid after {@link #weigh}). */
    double weight(int i) {
        return weights[i];
    }

    /** Sum of the candidates' weights. */
    double total() {
        return total;
    }

    /**
     * Makes every token whose logit is at least {@code threshold} a candidate; tokens at negative infinity (masked
     * by a logits processor) never are.
     */
    void gather(float[] source, double threshold) {
        ensureCapacity(source.length);
        int n = 0;
        for (int i = 0; i < source.length; i++) {
            float l = source[i];
            if (l >= threshold && l != Float.NEGATIVE_INFINITY) {
                ids[n] = i;
                logits[n] = l;
                n++;
            }
        }
        size = n;
    }

    /**
     * Makes the {@code k} highest-ranked tokens whose logit is at least {@code threshold} the candidates, in one pass
     * over the row with a heap of k entries: for small k most tokens are rejected by one comparison with the
     * heap's weakest entry, which beats copying the row for a quickselect.
     */
    void gatherTopK(float[] source, double threshold, int k) {
        ensureCapacity(k);
        int n = 0;
        for (int i = 0; i < source.length; i++) {
            float l = source[i];
            if (!(l >= threshold) || l == Float.NEGATIVE_INFINITY) continue;
            if (n < k) {
                ids[n] = i;
                logits[n] = l;
                siftUp(n++);
            } else if (l > logits[0]) { // ids ascend, so an equal logit ranks below the weakest entry
                ids[0] = i;
                logits[0] = l;
                siftDown(0, n);
            }
        }
        size = n;
    }

    /** Keeps the k highest-ranked candidates (in no particular order). */
    void keepTopK(int k) {
        if (k <= 0 || k >= size) return;
        int lo = 0;
        int hi = size;
        // Quickselect: narrow [lo, hi) until the k-th ranked candidate sits at index k-1.
        while (hi - lo > 1) {
            int p = partition(lo, hi);
            if (p == k - 1 || p == k) {
                break;
            } else if (p > k) {
                hi = p;
            } else {
                lo = p + 1;
            }
        }
        size = k;
    }

    /**
     * Computes each candidate's weight {@code exp((logit - max) / temperature)} and their total.
     *
     * @param max the largest logit of the row (so the largest weight is 1 and nothing overflows)
     */
    void weigh(float max, double temperature) {
        double sum = 0;
        double inverse = 1.0 / temperature;
        for (int i = 0; i < size; i++) {
            double w = Math.exp((logits[i] - (double) max) * inverse);
            weights[i] = w;
            sum += w;
        }
        total = sum;
    }

    /**
     * Nucleus truncation: keeps the highest-ranked candidates up to and including the first at which their
     * cumulative probability reaches {@code topP} (vLLM's rule: a token stays if the mass ranked strictly above it
     * is below {@code topP}).
     */
    void keepTopP(double topP) {
        if (topP >= 1 || size <= 1) return;
        double need = topP * total;
        int lo = 0;
        int hi = headReaching(need);
        double kept = 0;
        // Invariant: [0, lo) is kept, ranked above [lo, hi), with mass kept < need; [hi, size) is dropped.
        int cutoff = -1;
        while (lo < hi) {
            if (hi - lo == 1) {
                cutoff = lo;
                break;
            }
            int p = partition(lo, hi);
            double above = 0;
            for (int i = lo; i < p; i++) above += weights[i];
            if (kept + above >= need) {
                hi = p;
            } else {
                kept += above + weights[p];
                if (kept >= need) {
                    cutoff = p;
                    break;
                }
                lo = p + 1;
            }
        }
        // Rounding can leave the whole range short of the target by an ulp: then everything in it is kept.
        int newSize = cutoff >= 0 ? cutoff + 1 : hi;
        size = Math.max(1, newSize);
        double sum = 0;
        for (int i = 0; i < size; i++) sum += weights[i];
        total = sum;
    }

    /**
     * Moves to the front the candidates whose weight is at least some bound, choosing the largest bound of 1e-3,
     * 1e-6, ... at which their mass reaches {@code need}, and returns how many: the nucleus lies among them. With
     * the peaked distributions of language models this leaves a few hundred of 150k tokens for the selection.
     */
    private int headReaching(double need) {
        for (double bound = 1e-3; bound > 1e-300; bound *= 1e-3) {
            int n = 0;
            double mass = 0;
            for (int i = 0; i < size; i++) {
                if (weights[i] >= bound) {
                    mass += weights[i];
                    swap(i, n++);
                }
            }
            if (mass >= need) return n;
        }
        return size;
    }

    /** Restores the min-heap (weakest-ranked at the root) after appending at index i. */
    private void siftUp(int i) {
        while (i > 0) {
            int parent = (i - 1) >>> 1;
            if (!above(parent, i)) return;
            swap(parent, i);
            i = parent;
        }
    }

    /** Restores the min-heap of n entries after replacing the entry at index i. */
    private void siftDown(int i, int n) {
        while (true) {
            int left = 2 * i + 1;
            if (left >= n) return;
            int weakest = left;
            int right = left + 1;
            if (right < n && above(left, right)) weakest = right;
            if (!above(i, weakest)) return;
            swap(i, weakest);
            i = weakest;
        }
    }

    /**
     * The candidate at which the running sum of weights, in array order, first exceeds {@code target}
     * ({@code 0 <= target < total}).
     */
    int draw(double target) {
        double sum = 0;
        for (int i = 0; i < size; i++) {
            sum += weights[i];
            if (target < sum) return ids[i];
        }
        // target rounded up to the total: the last candidate with any weight.
        for (int i = size - 1; i > 0; i--) {
            if (weights[i] > 0) return ids[i];
        }
        return ids[0];
    }

    /**
     * Partitions [lo, hi) around a median-of-three pivot: afterwards the candidates ranked above the pivot occupy
     * [lo, p), the pivot sits at p, the ones ranked below at (p, hi). Returns p.
     */
    private int partition(int lo, int hi) {
        int mid = (lo + hi) >>> 1;
        int last = hi - 1;
        // Order lo, mid, last so the median lands at mid, then park it at the end.
        if (above(mid, lo)) swap(mid, lo);
        if (above(last, lo)) swap(last, lo);
        if (above(last, mid)) swap(last, mid);
        swap(mid, last);
        int store = lo;
        for (int i = lo; i < last; i++) {
            if (above(i, last)) swap(i, store++);
        }
        swap(store, last);
        return store;
    }

    /** Whether candidate i is ranked above candidate j. */
    private boolean above(int i, int j) {
        float a = logits[i];
        float b = logits[j];
        return a > b || (a == b && ids[i] < ids[j]);
    }

    private void swap(int i, int j) {
        int id = ids[i];
        ids[i] = ids[j];
        ids[j] = id;
        float l = logits[i];
        logits[i] = logits[j];
        logits[j] = l;
        double w = weights[i];
        weights[i] = weights[j];
        weights[j] = w;
    }

    private void ensureCapacity(int n) {
        if (ids.length < n) {
            ids = new int[n];
            logits = new float[n];
            weights = new double[n];
        }
    }
}
