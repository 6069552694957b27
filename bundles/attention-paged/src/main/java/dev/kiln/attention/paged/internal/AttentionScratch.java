package dev.kiln.attention.paged.internal;

/** Growable per-worker buffers, indexed by the worker index the pool hands to tasks. */
final class AttentionScratch {
    private final float[][][] floats;
    private final int[][][] ints;

    AttentionScratch(int threads) {
        floats = new float[threads][5][];
        ints = new int[threads][2][];
    }

    float[] floats(int worker, int slot, int size) {
        float[] b = floats[worker][slot];
        if (b == null || b.length < size) floats[worker][slot] = b = new float[size];
        return b;
    }

    int[] ints(int worker, int slot, int size) {
        int[] b = ints[worker][slot];
        if (b == null || b.length < size) ints[worker][slot] = b = new int[size];
        return b;
    }
}
