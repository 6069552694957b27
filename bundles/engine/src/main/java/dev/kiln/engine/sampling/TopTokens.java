package dev.kiln.engine.sampling;

/**
 * The n largest entries of a logits row by a single pass with a heap of n entries, most likely first (ties: the
 * lower token id first). Linear in the vocabulary for the small n of log-probability requests.
 */
public final class TopTokens {
    private TopTokens() {}

    /** Token ids of the {@code n} largest values of {@code values[offset .. offset + length)}, descending. */
    public static int[] select(float[] values, int offset, int length, int n) {
        n = Math.min(n, length);
        if (n <= 0) return new int[0];
        // Min-heap on (value, -id): the root is the weakest of the best n so far.
        int[] heap = new int[n];
        int size = 0;
        for (int id = 0; id < length; id++) {
            float v = values[offset + id];
            if (size < n) {
                heap[size] = id;
                siftUp(heap, size++, values, offset);
            } else if (v > values[offset + heap[0]]) { // ids ascend: an equal value ranks below the root
                heap[0] = id;
                siftDown(heap, size, values, offset);
            }
        }
        // Pop the weakest repeatedly into the back of the result.
        int[] out = new int[size];
        for (int k = size - 1; k >= 0; k--) {
            out[k] = heap[0];
            heap[0] = heap[--size];
            siftDown(heap, size, values, offset);
        }
        return out;
    }

    /** Whether token a ranks below token b. */
    private static boolean weaker(int a, int b, float[] values, int offset) {
        float va = values[offset + a];
        float vb = values[offset + b];
        return va < vb || (va == vb && a > b);
    }

    private static void siftUp(int[] heap, int i, float[] values, int offset) {
        while (i > 0) {
            int parent = (i - 1) >>> 1;
            if (!weaker(heap[i], heap[parent], values, offset)) return;
            int t = heap[i];
            heap[i] = heap[parent];
            heap[parent] = t;
            i = parent;
        }
    }

    private static void siftDown(int[] heap, int size, float[] values, int offset) {
        int i = 0;
        while (true) {
            int left = 2 * i + 1;
            if (left >= size) return;
            int child = left + 1 < size && weaker(heap[left + 1], heap[left], values, offset) ? left + 1 : left;
            if (!weaker(heap[child], heap[i], values, offset)) return;
            int t = heap[i];
            heap[i] = heap[child];
            heap[child] = t;
            i = child;
        }
    }
}
