package dev.kiln.attention.paged;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cpu.CpuBackend;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Paged attention against a naive double-precision reference that keeps every sequence's full history. */
class PagedAttentionTest {
    private static final CpuBackend BACKEND = new CpuBackend(2);
    private final PagedAttention kernel = new PagedAttention();

    @AfterAll
    static void stop() {
        BACKEND.shutdown();
    }

    /** One sequence: its cache blocks and every key, value and position seen so far. */
    private static final class Sequence {
        final int[] blocks;
        final List<float[]> keys = new ArrayList<>();
        final List<float[]> values = new ArrayList<>();

        Sequence(int[] blocks) {
            this.blocks = blocks;
        }

        int length() {
            return keys.size();
        }

        int slot(int position, int blockSize) {
            return blocks[position / blockSize] * blockSize + position % blockSize;
        }
    }

    /** A model-like geometry under test. */
    private record Geometry(int heads, int kvHeads, int keyDim, int valueDim, boolean mla) {
        KvCacheSpec spec(int layers) {
            return new KvCacheSpec(layers, kvHeads, keyDim, valueDim, mla, DType.F32);
        }
    }

    /** The cache, its geometry and a block allocator handing out shuffled block ids. */
    private final class Harness {
        final Geometry g;
        final KvCache cache;
        final int blockSize;
        final int layer;
        final Random random;
        final List<Integer> freeBlocks = new ArrayList<>();

        Harness(Geometry g, int numBlocks, int blockSize, int layers, int layer, long seed) {
            this(g, numBlocks, blockSize, layers, layer, seed, BACKEND);
        }

        Harness(Geometry g, int numBlocks, int blockSize, int layers, int layer, long seed, CpuBackend backend) {
            this.g = g;
            this.blockSize = blockSize;
            this.layer = layer;
            this.random = new Random(seed);
            KvCacheSpec spec = g.spec(layers);
            assertTrue(kernel.supports(spec, backend));
            this.cache = kernel.allocate(spec, numBlocks, blockSize, backend);
            for (int b = 0; b < numBlocks; b++) freeBlocks.add(b);
            Collections.shuffle(freeBlocks, random); // non-contiguous, out-of-order block tables
        }

        Sequence newSequence(int capacity) {
            int[] blocks = new int[(capacity + blockSize - 1) / blockSize];
            for (int i = 0; i < blocks.length; i++) blocks[i] = freeBlocks.removeLast();
            return new Sequence(blocks);
        }

        /**
         * One forward: each sequence gets the given number of new tokens with random q, k, v; returns the
         * kernel's output and checks it against the reference.
         */
        float[] step(Sequence[] sequences, int[] newTokens, float[][] queriesOut) {
            int n = sequences.length;
            int[] queryStart = new int[n + 1];
            for (int s = 0; s < n; s++) queryStart[s + 1] = queryStart[s] + newTokens[s];
            int tokens = queryStart[n];
            int kvWidth = g.kvHeads * g.keyDim;
            int vWidth = g.kvHeads * g.valueDim;
            float[] q = gaussian(tokens * g.heads * g.keyDim);
            float[] k = gaussian(tokens * kvWidth);
            float[] v = g.mla ? null : gaussian(tokens * vWidth);
            int[] contextLength = new int[n];
            int[][] tables = new int[n][];
            int[] slots = new int[tokens];
            for (int s = 0; s < n; s++) {
                Sequence seq = sequences[s];
                for (int j = 0; j < newTokens[s]; j++) {
                    int t = queryStart[s] + j;
                    float[] key = new float[kvWidth];
                    System.arraycopy(k, t * kvWidth, key, 0, kvWidth);
                    float[] value = new float[vWidth];
                    if (g.mla) {
                        for (int h = 0; h < g.kvHeads; h++) System.arraycopy(key, h * g.keyDim, value, h * g.valueDim, g.valueDim);
                    } else {
                        System.arraycopy(v, t * vWidth, value, 0, vWidth);
                    }
                    slots[t] = seq.slot(seq.length(), blockSize);
                    seq.keys.add(key);
                    seq.values.add(value);
                }
                contextLength[s] = seq.length();
                tables[s] = seq.blocks.clone();
            }
            // Workspaces larger than the batch, as a model passes them.
            Tensor qt = tensor(q, tokens + 3, g.heads * g.keyDim);
            Tensor kt = tensor(k, tokens + 3, kvWidth);
            Tensor vt = g.mla ? null : tensor(v, tokens + 3, vWidth);
            Tensor out = BACKEND.allocate(DType.F32, tokens + 3, g.heads * g.valueDim);
            float scale = (float) (1 / Math.sqrt(g.keyDim));
            AttentionMetadata meta = new AttentionMetadata(queryStart, contextLength, tables, slots);
            kernel.forward(layer, qt.rows(tokens), kt.rows(tokens), vt == null ? null : vt.rows(tokens),
                    out.rows(tokens), scale, cache, meta);
            float[] got = BACKEND.read(out);
            for (int s = 0; s < n; s++) {
                for (int j = 0; j < newTokens[s]; j++) {
                    int t = queryStart[s] + j;
                    int position = contextLength[s] - newTokens[s] + j;
                    float[] expected = reference(sequences[s], q, t, position, scale);
                    for (int i = 0; i < expected.length; i++) {
                        assertEquals(expected[i], got[t * g.heads * g.valueDim + i], 2e-5,
                                "sequence " + s + " token " + j + " (position " + position + ") element " + i);
                    }
                }
            }
            if (queriesOut != null) queriesOut[0] = q;
            return Arrays.copyOf(got, tokens * g.heads * g.valueDim);
        }

        /** softmax(scale · q·kᵀ) · v over positions 0..position, per head, in double precision. */
        float[] reference(Sequence seq, float[] q, int t, int position, float scale) {
            int group = g.heads / g.kvHeads;
            float[] out = new float[g.heads * g.valueDim];
            for (int h = 0; h < g.heads; h++) {
                int kvHead = h / group;
                double[] scores = new double[position + 1];
                double max = Double.NEGATIVE_INFINITY;
                for (int p = 0; p <= position; p++) {
                    double dot = 0;
                    float[] key = seq.keys.get(p);
                    for (int d = 0; d < g.keyDim; d++) {
                        dot += (double) q[(t * g.heads + h) * g.keyDim + d] * key[kvHead * g.keyDim + d];
                    }
                    scores[p] = dot * scale;
                    max = Math.max(max, scores[p]);
                }
                double sum = 0;
                for (int p = 0; p <= position; p++) sum += scores[p] = Math.exp(scores[p] - max);
                for (int d = 0; d < g.valueDim; d++) {
                    double acc = 0;
                    for (int p = 0; p <= position; p++) acc += scores[p] * seq.values.get(p)[kvHead * g.valueDim + d];
                    out[h * g.valueDim + d] = (float) (acc / sum);
                }
            }
            return out;
        }

        float[] gaussian(int n) {
            float[] a = new float[n];
            for (int i = 0; i < n; i++) a[i] = (float) random.nextGaussian();
            return a;
        }
    }

    private static Tensor tensor(float[] values, int rows, int columns) {
        Tensor t = BACKEND.allocate(DType.F32, rows, columns);
        BACKEND.write(values, t);
        return t;
    }

    @ParameterizedTest(name = "heads={0} kvHeads={1} keyDim={2} valueDim={3} mla={4} blockSize={5}")
    @CsvSource({
        "4, 4, 32, 32, false, 16",   // multi-head, ratio 1
        "4, 2, 40, 24, false, 5",    // ratio 2, odd block size, value dim != key dim, not vector multiples
        "8, 2, 64, 64, false, 16",   // ratio 4
        "12, 2, 128, 128, false, 16", // Qwen2-1.5B-like
        "6, 1, 72, 64, true, 8",     // MLA: one latent entry whose first 64 elements are the value
        "3, 3, 7, 5, false, 3",      // tiny odd dimensions
        "4, 1, 288, 256, true, 16",  // MLA with keys too wide for the transposed score path
    })
    void mixedBatchesOfPrefillDecodeAndVerificationMatchTheReference(int heads, int kvHeads, int keyDim, int valueDim,
                                                                     boolean mla, int blockSize) {
        Harness h = new Harness(new Geometry(heads, kvHeads, keyDim, valueDim, mla), 4 * (120 + blockSize - 1) / blockSize + 3, blockSize, 3, 1, heads * 100L + blockSize);
        Sequence a = h.newSequence(120);
        Sequence b = h.newSequence(120);
        Sequence c = h.newSequence(120);
        Sequence d = h.newSequence(120);
        // Prefill chunks of different lengths in one batch, one of them spanning many blocks.
        h.step(new Sequence[] {a, b, c}, new int[] {37, 1, 20}, null);
        // Decode, verification of a 4-token draft, a continued prefill chunk and a brand-new sequence together.
        h.step(new Sequence[] {b, a, c, d}, new int[] {1, 4, 17, 9}, null);
        h.step(new Sequence[] {d, c, b, a}, new int[] {1, 1, 3, 1}, null);
    }

    @Test
    void prefillInOneCallEqualsPrefillInChunks() {
        Geometry g = new Geometry(8, 2, 64, 64, false);
        Harness whole = new Harness(g, 32, 16, 1, 0, 5);
        Harness chunked = new Harness(g, 32, 16, 1, 0, 5);
        Sequence s1 = whole.newSequence(100);
        Sequence s2 = chunked.newSequence(100);
        float[][] q = new float[1][];
        float[] all = whole.step(new Sequence[] {s1}, new int[] {100}, q);
        // Replay the same keys and values in chunks of 30, 1, 45 and 24 tokens through the other cache.
        int done = 0;
        int width = g.heads * g.valueDim;
        for (int chunk : new int[] {30, 1, 45, 24}) {
            int[] slots = new int[chunk];
            float[] k = new float[chunk * g.kvHeads * g.keyDim];
            float[] v = new float[chunk * g.kvHeads * g.valueDim];
            float[] qs = new float[chunk * g.heads * g.keyDim];
            for (int j = 0; j < chunk; j++) {
                int p = done + j;
                slots[j] = s2.slot(p, 16);
                System.arraycopy(s1.keys.get(p), 0, k, j * g.kvHeads * g.keyDim, g.kvHeads * g.keyDim);
                System.arraycopy(s1.values.get(p), 0, v, j * g.kvHeads * g.valueDim, g.kvHeads * g.valueDim);
                System.arraycopy(q[0], p * g.heads * g.keyDim, qs, j * g.heads * g.keyDim, g.heads * g.keyDim);
            }
            Tensor out = BACKEND.allocate(DType.F32, chunk, width);
            AttentionMetadata meta = new AttentionMetadata(new int[] {0, chunk}, new int[] {done + chunk},
                    new int[][] {s2.blocks}, slots);
            kernel.forward(0, tensor(qs, chunk, g.heads * g.keyDim), tensor(k, chunk, g.kvHeads * g.keyDim),
                    tensor(v, chunk, g.kvHeads * g.valueDim), out, (float) (1 / Math.sqrt(g.keyDim)), chunked.cache, meta);
            float[] got = BACKEND.read(out);
            for (int i = 0; i < got.length; i++) {
                assertEquals(all[done * width + i], got[i], 1e-5, "token " + (done + i / width));
            }
            done += chunk;
        }
    }

    @ParameterizedTest(name = "mla={0}")
    @CsvSource({"false", "true"})
    void decodeTokenByTokenMatchesTheReference(boolean mla) {
        Geometry g = mla ? new Geometry(16, 1, 96, 64, true) : new Geometry(4, 2, 48, 48, false);
        Harness h = new Harness(g, 80, 4, 2, 0, 17);
        Sequence s = h.newSequence(150);
        Sequence other = h.newSequence(150);
        h.step(new Sequence[] {s, other}, new int[] {5, 2}, null);
        for (int i = 0; i < 70; i++) h.step(new Sequence[] {s, other}, new int[] {1, 1}, null);
        h.step(new Sequence[] {s}, new int[] {1}, null);
    }

    @Test
    void layersAreIndependent() {
        Geometry g = new Geometry(2, 1, 16, 16, false);
        Harness layer0 = new Harness(g, 8, 4, 2, 0, 3);
        Sequence s = layer0.newSequence(20);
        layer0.step(new Sequence[] {s}, new int[] {10}, null);
        // Writing layer 1 of the same slots must not disturb layer 0's keys.
        float[] k = new float[10 * 16];
        Arrays.fill(k, 100f);
        int[] slots = new int[10];
        for (int p = 0; p < 10; p++) slots[p] = s.slot(p, 4);
        kernel.forward(1, tensor(new float[10 * 32], 10, 32), tensor(k, 10, 16), tensor(k, 10, 16),
                BACKEND.allocate(DType.F32, 10, 32), 0.25f, layer0.cache,
                new AttentionMetadata(new int[] {0, 10}, new int[] {10}, new int[][] {s.blocks}, slots));
        layer0.step(new Sequence[] {s}, new int[] {1}, null);
    }

    @Test
    void copiedBlocksServeAsTheOriginals() {
        Geometry g = new Geometry(4, 2, 32, 32, false);
        Harness h = new Harness(g, 30, 8, 2, 1, 23);
        Sequence original = h.newSequence(60);
        h.step(new Sequence[] {original}, new int[] {43}, null);
        // Fork: a second sequence whose blocks are copies, then both continue with the same new token.
        Sequence fork = h.newSequence(60);
        int used = (43 + 7) / 8;
        h.cache.copyBlocks(Arrays.copyOf(original.blocks, used), Arrays.copyOf(fork.blocks, used));
        fork.keys.addAll(original.keys);
        fork.values.addAll(original.values);
        h.step(new Sequence[] {fork, original}, new int[] {2, 1}, null);
        assertThrows(IllegalArgumentException.class, () -> h.cache.copyBlocks(new int[] {1}, new int[] {2, 3}));
        assertThrows(IndexOutOfBoundsException.class, () -> h.cache.copyBlocks(new int[] {30}, new int[] {2}));
    }

    @Test
    void reportsGeometryAndRejectsWhatItCannotServe() {
        KvCacheSpec spec = new KvCacheSpec(2, 2, 64, 64, false, DType.F32);
        KvCache cache = kernel.allocate(spec, 10, 16, BACKEND);
        assertEquals(spec, cache.spec());
        assertEquals(10, cache.numBlocks());
        assertEquals(16, cache.blockSize());
        assertEquals(spec.bytesPerToken() * 160, cache.bytes());
        assertFalse(kernel.supports(new KvCacheSpec(2, 2, 64, 64, false, DType.F8_E4M3), BACKEND));
        assertThrows(IllegalArgumentException.class,
                () -> kernel.allocate(new KvCacheSpec(2, 2, 64, 64, false, DType.I8), 10, 16, BACKEND));
        Tensor q = BACKEND.allocate(DType.F32, 1, 3 * 64);
        Tensor k = BACKEND.allocate(DType.F32, 1, 128);
        AttentionMetadata one = new AttentionMetadata(new int[] {0, 1}, new int[] {1}, new int[][] {{0}}, new int[] {0});
        assertThrows(IllegalArgumentException.class, // 3 heads over 2 KV heads
                () -> kernel.forward(0, q, k, k, BACKEND.allocate(DType.F32, 1, 192), 1f, cache, one));
        Tensor q4 = BACKEND.allocate(DType.F32, 1, 4 * 64);
        AttentionMetadata tooLong = new AttentionMetadata(new int[] {0, 1}, new int[] {17}, new int[][] {{0}}, new int[] {0});
        assertThrows(IllegalArgumentException.class,
                () -> kernel.forward(0, q4, k, k, BACKEND.allocate(DType.F32, 1, 256), 1f, cache, tooLong));
        AttentionMetadata badBlock = new AttentionMetadata(new int[] {0, 1}, new int[] {1}, new int[][] {{10}}, new int[] {0});
        assertThrows(IndexOutOfBoundsException.class,
                () -> kernel.forward(0, q4, k, k, BACKEND.allocate(DType.F32, 1, 256), 1f, cache, badBlock));
        cache.close();
    }

    @Test
    void aSingleThreadedBackendComputesTheSame() {
        try (CpuBackend single = new CpuBackend(1)) {
            Harness h = new Harness(new Geometry(8, 2, 64, 64, false), 40, 16, 1, 0, 29, single);
            Sequence a = h.newSequence(200);
            Sequence b = h.newSequence(200);
            h.step(new Sequence[] {a, b}, new int[] {150, 40}, null);
            h.step(new Sequence[] {a, b}, new int[] {1, 1}, null);
        }
    }
}
