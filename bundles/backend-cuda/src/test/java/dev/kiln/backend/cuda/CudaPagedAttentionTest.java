package dev.kiln.backend.cuda;

import static dev.kiln.backend.cuda.testing.Data.maxAbsDiff;
import static dev.kiln.backend.cuda.testing.Data.poison;
import static dev.kiln.backend.cuda.testing.Data.uniform;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.attention.paged.PagedAttention;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.backend.cuda.testing.Gpu;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The CUDA paged attention against the CPU one on identical random keys, values and queries: grouped-query and
 * MLA-style (values inside the keys) caches, scrambled block tables, contexts longer than one tile of keys, and a
 * step that mixes a prefill chunk over cached context, a decode token, a verification and a padding token.
 */
class CudaPagedAttentionTest {
    private static final int BLOCK = 16;
    private static final int BLOCKS = 64;

    private static CudaBackend gpu;
    private static CpuBackend cpu;
    private final AttentionKernel gpuAttention = Gpu.attention();
    private final AttentionKernel cpuAttention = new PagedAttention();

    @BeforeAll
    static void start() {
        gpu = Gpu.backend();
        cpu = new CpuBackend(1);
    }

    @AfterAll
    static void stop() {
        if (cpu != null) cpu.shutdown();
    }

    @Test
    void groupedQueryAttentionMatchesTheCpu() {
        compare(new KvCacheSpec(2, 2, 64, 64, false, DType.F32), 6);
    }

    @Test
    void latentAttentionWithValuesInsideTheKeysMatchesTheCpu() {
        compare(new KvCacheSpec(2, 1, 96, 64, true, DType.F32), 4);
    }

    @Test
    void theKernelServesOnlyTheCudaBackendAndF32Caches() {
        KvCacheSpec spec = new KvCacheSpec(1, 2, 64, 64, false, DType.F32);
        assertTrue(gpuAttention.supports(spec, gpu));
        assertFalse(gpuAttention.supports(spec, cpu));
        assertFalse(gpuAttention.supports(new KvCacheSpec(1, 2, 64, 64, false, DType.BF16), gpu));
        assertThrows(IllegalArgumentException.class, () -> gpuAttention.allocate(spec, 4, BLOCK, cpu));
    }

    /** Runs the same three steps on both backends and compares every output of every layer. */
    private void compare(KvCacheSpec spec, int heads) {
        Random random = new Random(7);
        List<Integer> free = new ArrayList<>();
        for (int b = 0; b < BLOCKS; b++) free.add(b);
        Collections.shuffle(free, random);
        int[] longSeq = take(free, 20);   // up to 320 tokens: two tiles of 256 keys
        int[] shortSeq = take(free, 2);
        int[] verifySeq = take(free, 3);

        try (KvCache gc = gpuAttention.allocate(spec, BLOCKS, BLOCK, gpu);
             KvCache cc = cpuAttention.allocate(spec, BLOCKS, BLOCK, cpu)) {
            // Step 1: prefill 290 tokens of the long sequence, 20 of the short one, 30 of the verifying one.
            step(spec, heads, random, gc, cc, new int[][] {longSeq, shortSeq, verifySeq}, new int[] {0, 0, 0},
                    new int[] {290, 20, 30}, false);
            // Step 2: a chunk of 7 over the long sequence's cache, one decode token, a verification of 4, and one
            // padding token at the end (slot -1).
            step(spec, heads, random, gc, cc, new int[][] {longSeq, shortSeq, verifySeq}, new int[] {290, 20, 30},
                    new int[] {7, 1, 4}, true);
        }
    }

    private void step(KvCacheSpec spec, int heads, Random random, KvCache gc, KvCache cc, int[][] tables,
                      int[] cached, int[] lengths, boolean padding) {
        int sequences = tables.length;
        int tokens = Arrays.stream(lengths).sum() + (padding ? 1 : 0);
        int[] queryStart = new int[sequences + 1];
        int[] context = new int[sequences];
        int[] slots = new int[tokens];
        int row = 0;
        for (int s = 0; s < sequences; s++) {
            queryStart[s] = row;
            context[s] = cached[s] + lengths[s];
            for (int j = 0; j < lengths[s]; j++, row++) {
                int position = cached[s] + j;
                slots[row] = tables[s][position / BLOCK] * BLOCK + position % BLOCK;
            }
        }
        if (padding) {
            // The padding token belongs to the last sequence's rows but stores nothing.
            slots[row] = -1;
            context[sequences - 1]++;
            row++;
        }
        queryStart[sequences] = row;
        var meta = new AttentionMetadata(queryStart, context, tables, slots);
        if (padding) {
            // Its context counts one more token than was ever written: give that slot defined contents on both.
            int position = context[sequences - 1] - 1;
            int slot = tables[sequences - 1][position / BLOCK] * BLOCK + position % BLOCK;
            var fill = new AttentionMetadata(new int[] {0, 1}, new int[] {position + 1},
                    new int[][] {tables[sequences - 1]}, new int[] {slot});
            for (int layer = 0; layer < spec.layers(); layer++) {
                run(spec, heads, random, gc, cc, fill, layer, 1);
            }
        }
        for (int layer = 0; layer < spec.layers(); layer++) run(spec, heads, random, gc, cc, meta, layer, tokens);
    }

    private void run(KvCacheSpec spec, int heads, Random random, KvCache gc, KvCache cc, AttentionMetadata meta,
                     int layer, int tokens) {
        float[] q = uniform(random, tokens * heads * spec.keyDim());
        float[] k = uniform(random, tokens * spec.kvHeads() * spec.keyDim());
        float[] v = spec.valuesInKeys() ? null : uniform(random, tokens * spec.kvHeads() * spec.valueDim());
        float scale = (float) (1 / Math.sqrt(spec.keyDim()));
        float[] g = forward(gpu, gpuAttention, gc, spec, heads, meta, layer, tokens, q, k, v, scale);
        float[] c = forward(cpu, cpuAttention, cc, spec, heads, meta, layer, tokens, q, k, v, scale);
        double diff = maxAbsDiff(g, c);
        assertTrue(diff < 1e-5, "layer " + layer + ", " + tokens + " tokens: CUDA differs from CPU by " + diff);
    }

    private static float[] forward(ComputeBackend backend, AttentionKernel kernel, KvCache cache, KvCacheSpec spec,
                                   int heads, AttentionMetadata meta, int layer, int tokens, float[] q, float[] k,
                                   float[] v, float scale) {
        try (Tensor qt = backend.allocate(DType.F32, tokens, heads * spec.keyDim());
             Tensor kt = backend.allocate(DType.F32, tokens, spec.kvHeads() * spec.keyDim());
             Tensor vt = v == null ? null : backend.allocate(DType.F32, tokens, spec.kvHeads() * spec.valueDim());
             Tensor out = backend.allocate(DType.F32, tokens, heads * spec.valueDim())) {
            backend.write(q, qt);
            backend.write(k, kt);
            if (vt != null) backend.write(v, vt);
            backend.write(poison(tokens * heads * spec.valueDim()), out);
            kernel.forward(layer, qt, kt, vt, out, scale, cache, meta);
            return backend.read(out);
        }
    }

    private static int[] take(List<Integer> free, int n) {
        int[] blocks = new int[n];
        for (int i = 0; i < n; i++) blocks[i] = free.removeLast();
        return blocks;
    }
}
