package dev.kiln.backend.cuda;

import static dev.kiln.backend.cuda.testing.Data.maxAbsDiff;
import static dev.kiln.backend.cuda.testing.Data.poison;
import static dev.kiln.backend.cuda.testing.Data.uniform;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.RotaryEmbedding;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.attention.paged.PagedAttention;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.backend.cuda.internal.AttentionBatch;
import dev.kiln.backend.cuda.internal.DeviceKvCache;
import dev.kiln.backend.cuda.internal.PrefillTiles;
import dev.kiln.backend.cuda.internal.SplitAttentionPlan;
import dev.kiln.backend.cuda.internal.StepRecorder;
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
 * The CUDA paged attention against the CPU one on identical random keys, values and queries, through both CUDA
 * kernels: the split-context kernel (the default wherever head sizes are whole float4 rows) and the per-(token,
 * head) kernel. Grouped-query and MLA-style (values inside the keys) caches, scrambled block tables, contexts on
 * both sides of the split kernel's chunk and bucket edges, steps that mix prefill chunks, decode tokens,
 * verification and padding tokens. Every comparison prints its largest difference.
 *
 * <p>bf16 caches are compared with the CPU kernel's f32 cache fed the same keys and values rounded to bf16 (to
 * nearest even, as the CUDA cache write rounds them): both then attend over identical numbers, and the only
 * difference left is the order of the f32 arithmetic, so the f32 tolerance applies.
 */
class CudaPagedAttentionTest {
    private static final int BLOCK = 16;
    private static final double TOLERANCE = 1e-5;

    private static CudaBackend gpu;
    private static CpuBackend cpu;
    private final AttentionKernel splitAttention = Gpu.attention();
    private final AttentionKernel perHeadAttention = new CudaPagedAttention(false);
    /** The kernel a GPU layer must have launched last, where a test expects one (the fill steps expect none). */
    private String expectedLastKernel;
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
    void groupedQueryAttentionMatchesTheCpuThroughBothKernels() {
        for (AttentionKernel kernel : List.of(splitAttention, perHeadAttention)) {
            mixedSteps(kernel, new KvCacheSpec(2, 2, 64, 64, false, DType.F32), 6);
        }
    }

    @Test
    void latentAttentionWithValuesInsideTheKeysMatchesTheCpuThroughBothKernels() {
        for (AttentionKernel kernel : List.of(splitAttention, perHeadAttention)) {
            mixedSteps(kernel, new KvCacheSpec(2, 1, 96, 64, true, DType.F32), 4);
        }
    }

    /** The DeepSeek-R1-Distill-Qwen-1.5B attention shape at contexts around the 256-key bucket edge and beyond. */
    @Test
    void splitDecodeOfGroupedQueryHeadsMatchesTheCpuAcrossContextLengths() {
        var spec = new KvCacheSpec(1, 2, 128, 128, false, DType.F32);
        decodeAfterPrefill(spec, 12, new int[] {1, 255, 256, 257, 1000, 3000}, 0, 0);
    }

    /** MLA-like: one latent KV head of 576 whose first 512 elements are the value, 16 query heads. */
    @Test
    void splitDecodeWithValuesInsideTheKeysMatchesTheCpu() {
        var spec = new KvCacheSpec(1, 1, 576, 512, true, DType.F32);
        decodeAfterPrefill(spec, 16, new int[] {1, 300, 2000}, 0, 0);
    }

    @Test
    void paddingTokensAttendLikeTheOthersAndStoreNothing() {
        var spec = new KvCacheSpec(1, 2, 128, 128, false, DType.F32);
        decodeAfterPrefill(spec, 12, new int[] {40, 700, 90}, 0, 2);
    }

    @Test
    void multiTokenVerificationMatchesTheCpu() {
        var spec = new KvCacheSpec(1, 2, 128, 128, false, DType.F32);
        decodeAfterPrefill(spec, 12, new int[] {515}, 2, 0);
        var latent = new KvCacheSpec(1, 1, 576, 512, true, DType.F32);
        decodeAfterPrefill(latent, 16, new int[] {77, 900}, 2, 1);
    }

    /**
     * Decode steps (every sequence one query token) write their keys and values inside the split kernel: each step
     * after the first reads what the steps before stored, so a wrong store shows up as a difference from the CPU
     * there. The engine's padding sequences ride along (context 1, slot -1, a borrowed block that they must not
     * overwrite); their rows are never read and are not compared.
     */
    @Test
    void decodeStepsWithTheCacheWriteFusedReadWhatEarlierStepsStored() {
        for (DType dtype : List.of(DType.F32, DType.BF16)) {
            consecutiveDecodeSteps(new KvCacheSpec(2, 2, 128, 128, false, dtype), 12, new int[] {3, 255, 600}, 4, 2);
            consecutiveDecodeSteps(new KvCacheSpec(1, 1, 576, 512, true, dtype), 16, new int[] {1, 40}, 3, 1);
        }
    }

    /**
     * The layer's rotary folded into a decode step's attention: queries and keys rotated by the backend's rotary
     * embedding just before, every layer of a step recorded before anything is read back (as a model's forward
     * runs). From the second layer on (the first uploads the step's metadata between the rotation and the
     * attention, so nothing folds there) the rotation and the attention become one launch. The outputs, and what
     * later steps read from the cache the folded kernel wrote, match the CPU rotating first and attending after.
     */
    @Test
    void decodeStepsWithTheRotaryFoldedIntoTheAttentionMatchTheCpu() {
        float[] frequencies = new float[64];
        for (int i = 0; i < 64; i++) frequencies[i] = (float) Math.pow(10000, -i / 64.0);
        RotaryEmbedding gpuRope = gpu.rotaryEmbedding(frequencies, 1f, RotaryEmbedding.Layout.HALVES);
        RotaryEmbedding cpuRope = cpu.rotaryEmbedding(frequencies, 1f, RotaryEmbedding.Layout.HALVES);
        for (DType dtype : List.of(DType.F32, DType.BF16)) {
            var spec = new KvCacheSpec(3, 2, 128, 128, false, dtype);
            int steps = 3;
            long before = gpu.context().recorder().stats().fusions();
            decodeSteps(spec, 12, new int[] {3, 255, 600}, steps, 0, new Random(13),
                    (caches, meta, positions, random, what) ->
                            rotatedStep(spec, 12, meta, positions, random, caches, gpuRope, cpuRope, what));
            long fusions = gpu.context().recorder().stats().fusions() - before;
            // Per step: each layer's key rotation joins the query's (3), and the second and third layers' attentions
            // take those launches in (2).
            assertTrue(fusions >= steps * (3 + 2), fusions + " fusions in " + steps + " steps of 3 layers");
        }
    }

    /** One step of every layer: on the GPU recorded together and read after; on the CPU rotated, then attended. */
    private void rotatedStep(KvCacheSpec spec, int heads, AttentionMetadata meta, int[] positions, Random random,
                             Caches caches, RotaryEmbedding gpuRope, RotaryEmbedding cpuRope, String what) {
        int tokens = meta.numTokens(), layers = spec.layers(), keyDim = spec.keyDim();
        float scale = (float) (1 / Math.sqrt(keyDim));
        float[][] q = new float[layers][], k = new float[layers][], v = new float[layers][];
        List<Tensor> tensors = new ArrayList<>();
        Tensor[] outs = new Tensor[layers];
        try {
            for (int l = 0; l < layers; l++) {
                q[l] = uniform(random, tokens * heads * keyDim);
                k[l] = uniform(random, tokens * spec.kvHeads() * keyDim);
                v[l] = uniform(random, tokens * spec.kvHeads() * spec.valueDim());
            }
            for (int l = 0; l < layers; l++) {
                Tensor qt = gpu.allocate(DType.F32, tokens, heads * keyDim);
                Tensor kt = gpu.allocate(DType.F32, tokens, spec.kvHeads() * keyDim);
                Tensor vt = gpu.allocate(DType.F32, tokens, spec.kvHeads() * spec.valueDim());
                outs[l] = gpu.allocate(DType.F32, tokens, heads * spec.valueDim());
                tensors.addAll(List.of(qt, kt, vt, outs[l]));
                gpu.write(q[l], qt);
                gpu.write(k[l], kt);
                gpu.write(v[l], vt);
                gpu.write(poison(tokens * heads * spec.valueDim()), outs[l]);
            }
            for (int l = 0; l < layers; l++) {
                Tensor qt = tensors.get(4 * l), kt = tensors.get(4 * l + 1), vt = tensors.get(4 * l + 2);
                gpuRope.apply(qt, positions, heads, keyDim, 0);
                gpuRope.apply(kt, positions, spec.kvHeads(), keyDim, 0);
                splitAttention.forward(l, qt, kt, vt, outs[l], scale, caches.gpu, meta);
            }
            boolean rounded = spec.dtype() == DType.BF16;
            // A bf16 cache of 128-wide heads, 6 query heads a KV head: the decode kernel takes the step (the last
            // layer's launch, still held: nothing has been read back yet), where the device runs clusters (without,
            // one split a token would be too long for it).
            if (rounded && gpu.context().kernels().largestAttentionCluster() > 1) {
                StepRecorder.Launch last = gpu.context().recorder().lastLaunch();
                assertEquals("kiln_decode_attention_bf16", last == null ? null : last.name());
            }
            for (int l = 0; l < layers; l++) {
                float[] g = gpu.read(outs[l]);
                float[] rotatedQueries = rotate(cpuRope, q[l], positions, heads, keyDim);
                float[] rotatedKeys = rotate(cpuRope, k[l], positions, spec.kvHeads(), keyDim);
                float[] c = forward(cpu, cpuAttention, caches.cpu, spec, heads, meta, l, rotatedQueries,
                        rounded ? bf16(rotatedKeys) : rotatedKeys, rounded ? bf16(v[l]) : v[l], scale);
                double diff = maxAbsDiff(g, c);
                // The two sides rotate in f32 each their own way (the GPU contracts to fused multiply-adds), so a
                // rotated key may differ in its last bit; in a bf16 cache that can round one element the other way
                // (2^-8 of it), which moves an output by up to ~4e-4 here. An f32 cache keeps the f32 tolerance.
                double tolerance = rounded ? 1e-3 : TOLERANCE;
                System.out.printf("%s with the rotary folded in, %s, layer %d: max |CUDA - CPU| = %.3e%n",
                        rounded ? "decode kernel (bf16 cache)" : "split kernel", what, l, diff);
                assertTrue(diff < tolerance, "rotary folded in, layer " + l + ", " + what + ": CUDA differs by " + diff);
            }
        } finally {
            for (Tensor t : tensors) t.close();
        }
    }

    /** Rows of {@code heads} heads rotated on the CPU. */
    private static float[] rotate(RotaryEmbedding rope, float[] rows, int[] positions, int heads, int headDim) {
        try (Tensor t = cpu.allocate(DType.F32, positions.length, heads * headDim)) {
            cpu.write(rows, t);
            rope.apply(t, positions, heads, headDim, 0);
            return cpu.read(t);
        }
    }

    /**
     * What a replayed CUDA graph relies on: while the longest context stays in its bucket, consecutive decode
     * steps upload metadata of one length and find the partial results' scratch at one address.
     */
    @Test
    void consecutiveDecodeStepsInOneBucketKeepTheMetadataLengthAndTheScratchAddress() {
        var spec = new KvCacheSpec(1, 2, 128, 128, false, DType.F32);
        int heads = 12;
        Random random = new Random(5);
        Caches caches = new Caches(spec, 256, random);
        try (caches) {
            int[][] tables = caches.tables(new int[] {620, 1020}); // room for the decoded tokens
            step(splitAttention, spec, heads, random, caches, tables, new int[] {0, 0}, new int[] {600, 1000}, 0);
            int[] cached = {600, 1000};
            int length = -1;
            long scratch = -1;
            for (int s = 0; s < 3; s++) {
                AttentionMetadata meta = step(splitAttention, spec, heads, random, caches, tables, cached,
                        new int[] {1, 1}, 0);
                int packedLength = AttentionBatch.pack(meta, caches.blocks, BLOCK).packed().length;
                long address = ((DeviceKvCache) caches.gpu).attentionScratch(1);
                if (s > 0) {
                    assertEquals(length, packedLength, "metadata length changed inside one context bucket");
                    assertEquals(scratch, address, "partial-result scratch moved inside one context bucket");
                }
                length = packedLength;
                scratch = address;
                cached[0]++;
                cached[1]++;
            }
            System.out.printf("decode steps at contexts 601..1003: metadata %d ints, scratch at 0x%x%n", length, scratch);
        }
    }

    /**
     * Clusters where the device runs them: on Hopper at least the portable 8 blocks (16 on an H100, whose GPCs hold
     * 16 blocks of these kernels), each size checked against what the device can place; none without.
     */
    @Test
    void theAttentionKernelsRunInTheLargestClustersTheDeviceCanPlace() {
        int largest = gpu.context().kernels().largestAttentionCluster();
        System.out.printf("largest attention cluster on %s: %d%n", gpu.context().properties().describe(), largest);
        assertEquals(1, Integer.bitCount(largest));
        if (gpu.context().recorder().clusters()) {
            assertTrue(largest >= 8 && largest <= SplitAttentionPlan.MAX_CLUSTER, "largest cluster " + largest);
        } else {
            assertEquals(1, largest);
        }
    }

    @Test
    void theKernelServesOnlyTheCudaBackendAndF32OrBf16Caches() {
        KvCacheSpec spec = new KvCacheSpec(1, 2, 64, 64, false, DType.F32);
        assertTrue(splitAttention.supports(spec, gpu));
        assertTrue(splitAttention.supports(new KvCacheSpec(1, 1, 576, 512, true, DType.F32), gpu));
        assertFalse(splitAttention.supports(spec, cpu));
        assertTrue(splitAttention.supports(new KvCacheSpec(1, 2, 64, 64, false, DType.BF16), gpu));
        assertTrue(splitAttention.supports(new KvCacheSpec(1, 1, 576, 512, true, DType.BF16), gpu));
        assertTrue(perHeadAttention.supports(new KvCacheSpec(1, 2, 20, 20, false, DType.BF16), gpu));
        assertFalse(splitAttention.supports(new KvCacheSpec(1, 2, 64, 64, false, DType.F16), gpu));
        assertFalse(splitAttention.supports(new KvCacheSpec(1, 2, 64, 64, false, DType.F8_E4M3), gpu));
        assertFalse(splitAttention.supports(new KvCacheSpec(1, 2, 64, 64, false, DType.BF16), cpu));
        assertThrows(IllegalArgumentException.class, () -> splitAttention.allocate(spec, 4, BLOCK, cpu));
        assertThrows(IllegalArgumentException.class,
                () -> splitAttention.allocate(new KvCacheSpec(1, 2, 64, 64, false, DType.F16), 4, BLOCK, gpu));
    }

    // ---------------------------------------------------------------- bf16 caches

    @Test
    void bf16GroupedQueryAttentionMatchesTheCpuOnRoundedKeysThroughBothKernels() {
        for (AttentionKernel kernel : List.of(splitAttention, perHeadAttention)) {
            mixedSteps(kernel, new KvCacheSpec(2, 2, 64, 64, false, DType.BF16), 6);
        }
    }

    /**
     * Prompt chunks over a bf16 cache of 128-wide heads take the tensor-core kernel: a batch of three chunks whole,
     * then, in a batch that also has a verification and a decode token (the split kernel's, in the same layer), the
     * chunk at its end; with 6 and 8 query heads a KV head; each tile over its whole context, and with contexts cut in
     * chunks of 64 keys merged by the combine kernel (tiles that straddle a chunk's start among them: their earlier
     * rows have no key in that chunk).
     */
    @Test
    void bf16PromptChunksTakeTheTensorCoreKernelAndMatchTheCpu() {
        for (int chunkKeys : new int[] {Integer.MAX_VALUE, 64}) for (int[] geometry : new int[][] {{12, 2}, {8, 1}}) {
            assumeTrue(gpu.context().kernels().prefillAttentionAvailable(geometry[0] / geometry[1]),
                    "no tensor-core prefill on this device");
            AttentionKernel tensorCores = new CudaPagedAttention(true, PrefillTiles.TOKENS, chunkKeys);
            var spec = new KvCacheSpec(2, geometry[1], 128, 128, false, DType.BF16);
            Random random = new Random(17);
            try (Caches caches = new Caches(spec, 64, random)) {
                int[][] tables = {caches.take(3), caches.take(2), caches.take(21)};
                // Cut contexts end with the merge of their chunks.
                // (8 query heads a KV head take the entry compiled for 128 registers.)
                expectedLastKernel = chunkKeys != Integer.MAX_VALUE ? "kiln_paged_attention_combine"
                        : geometry[0] / geometry[1] > PrefillTiles.MAX_NARROW_GROUP ? "kiln_prefill_attention_wide_bf16"
                        : "kiln_prefill_attention_bf16";
                try {
                    step(tensorCores, spec, geometry[0], random, caches, tables, new int[] {0, 0, 0},
                            new int[] {30, 20, 290}, 0);
                    // 4 verified tokens and a decode token first, then a chunk of 37 and a padding token (38 tokens
                    // of the last sequence: three tiles, the last of 6).
                    step(tensorCores, spec, geometry[0], random, caches, tables, new int[] {30, 20, 290},
                            new int[] {4, 1, 37}, 1);
                } finally {
                    expectedLastKernel = null;
                }
            }
        }
    }

    @Test
    void bf16LatentAttentionWithValuesInsideTheKeysMatchesTheCpuThroughBothKernels() {
        for (AttentionKernel kernel : List.of(splitAttention, perHeadAttention)) {
            mixedSteps(kernel, new KvCacheSpec(2, 1, 96, 64, true, DType.BF16), 4);
        }
    }

    /**
     * Heads the split kernel cannot read 8 bf16 at a time take the per-head kernel: 4-element rows (its 8-byte
     * loads) and odd sizes (element by element).
     */
    @Test
    void bf16HeadsThatAreNotWholeSixteenByteRowsTakeThePerHeadKernel() {
        mixedSteps(splitAttention, new KvCacheSpec(1, 2, 20, 12, false, DType.BF16), 4);
        mixedSteps(splitAttention, new KvCacheSpec(1, 2, 18, 14, false, DType.BF16), 4);
        mixedSteps(splitAttention, new KvCacheSpec(1, 1, 36, 20, true, DType.BF16), 2);
    }

    @Test
    void bf16SplitDecodeOfGroupedQueryHeadsMatchesTheCpuAcrossContextLengths() {
        var spec = new KvCacheSpec(1, 2, 128, 128, false, DType.BF16);
        decodeAfterPrefill(spec, 12, new int[] {1, 255, 256, 257, 1000, 3000}, 0, 0);
    }

    @Test
    void bf16SplitDecodeWithValuesInsideTheKeysMatchesTheCpu() {
        var spec = new KvCacheSpec(1, 1, 576, 512, true, DType.BF16);
        decodeAfterPrefill(spec, 16, new int[] {1, 300, 2000}, 0, 0);
    }

    @Test
    void bf16PaddingTokensAttendLikeTheOthersAndStoreNothing() {
        var spec = new KvCacheSpec(1, 2, 128, 128, false, DType.BF16);
        decodeAfterPrefill(spec, 12, new int[] {40, 700, 90}, 0, 2);
        var latent = new KvCacheSpec(1, 1, 576, 512, true, DType.BF16);
        decodeAfterPrefill(latent, 16, new int[] {77, 900}, 0, 3);
    }

    @Test
    void bf16MultiTokenVerificationMatchesTheCpu() {
        var spec = new KvCacheSpec(1, 2, 128, 128, false, DType.BF16);
        decodeAfterPrefill(spec, 12, new int[] {515}, 2, 0);
        var latent = new KvCacheSpec(1, 1, 576, 512, true, DType.BF16);
        decodeAfterPrefill(latent, 16, new int[] {77, 900}, 2, 1);
    }

    /** A bf16 cache takes half the bytes of an f32 one. */
    @Test
    void aBf16CacheHoldsHalfTheBytes() {
        var f32 = new KvCacheSpec(2, 2, 64, 64, false, DType.F32);
        var bf16 = new KvCacheSpec(2, 2, 64, 64, false, DType.BF16);
        try (KvCache a = splitAttention.allocate(f32, 8, BLOCK, gpu); KvCache b = splitAttention.allocate(bf16, 8, BLOCK, gpu)) {
            assertEquals(a.bytes() / 2, b.bytes());
            assertEquals(8L * BLOCK * bf16.bytesPerToken(), b.bytes());
        }
    }

    /**
     * The cache write rounds to nearest, ties to even, exactly as {@link #bf16(float)}: a one-token context gives
     * its value (weight 1) back unchanged, so the output is the stored value. Ties and near-ties, through both
     * kernels, separate values and values inside the keys.
     */
    @Test
    void theBf16CacheWriteRoundsToNearestEven() {
        // The reference rounding itself: ties go to the even neighbour, anything above a tie goes up.
        assertEquals(1.0f, bf16(1.0f + 0x1p-8f));
        assertEquals(1.0f + 0x1p-6f, bf16(1.0f + 3 * 0x1p-8f));
        assertEquals(1.0f + 0x1p-7f, bf16(1.0f + 0x1p-8f + 0x1p-20f));
        assertEquals(-1.0f, bf16(-1.0f - 0x1p-8f));
        float[] special = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-20f, -1.0f - 0x1p-8f,
                1.0f + 0x1p-8f - 0x1p-20f, 0.1f, -0.3f, 1e-3f, 12345.678f, -2.5e-5f, 0.0f, 2.0f - 0x1p-9f, 1e30f, -7.0f,
                0x1p-126f * 1.5f, 3.0f + 0x1p-7f};
        for (AttentionKernel kernel : List.of(splitAttention, perHeadAttention)) {
            for (boolean inKeys : new boolean[] {false, true}) {
                var spec = new KvCacheSpec(1, 1, inKeys ? 24 : 16, 16, inKeys, DType.BF16);
                try (KvCache cache = kernel.allocate(spec, 1, BLOCK, gpu)) {
                    var meta = new AttentionMetadata(new int[] {0, 1}, new int[] {1}, new int[][] {{0}}, new int[] {0});
                    float[] q = uniform(new Random(1), spec.keyDim());
                    float[] k = new float[spec.keyDim()];
                    System.arraycopy(special, 0, k, 0, inKeys ? special.length : 0);
                    float[] v = inKeys ? null : special;
                    float[] out = forward(gpu, kernel, cache, spec, 1, meta, 0, q, inKeys ? k : uniform(new Random(2), 16), v,
                            0.25f);
                    float[] expected = bf16(special);
                    for (int d = 0; d < special.length; d++) {
                        assertEquals(Float.floatToIntBits(expected[d]), Float.floatToIntBits(out[d]),
                                "value " + special[d] + " stored as " + out[d] + ", expected " + expected[d]
                                        + (inKeys ? " (values in keys)" : "") + (kernel == perHeadAttention ? ", per-head kernel" : ""));
                    }
                }
            }
        }
    }

    /** Prefix sharing copies whole blocks: the copies attend like the originals, for both element types. */
    @Test
    void copiedBlocksAttendLikeTheOriginals() {
        for (DType type : List.of(DType.F32, DType.BF16)) {
            var spec = new KvCacheSpec(2, 2, 64, 64, false, type);
            int heads = 4;
            Random random = new Random(3);
            try (Caches caches = new Caches(spec, 16, random)) {
                int[][] original = {caches.take(3)};
                step(splitAttention, spec, heads, random, caches, original, new int[] {0}, new int[] {40}, 0);
                int[][] copy = {caches.take(3)};
                caches.gpu.copyBlocks(original[0], copy[0]);
                caches.cpu.copyBlocks(original[0], copy[0]);
                // Both sequences decode a token over their 40 cached ones; the copy reads only copied blocks.
                step(splitAttention, spec, heads, random, caches, copy, new int[] {40}, new int[] {1}, 0);
                step(splitAttention, spec, heads, random, caches, original, new int[] {40}, new int[] {1}, 0);
            }
        }
    }

    /** {@code v} rounded to the nearest bf16, ties to even: what the CUDA cache write stores. */
    static float bf16(float v) {
        int bits = Float.floatToRawIntBits(v);
        if (Float.isNaN(v)) return v;
        bits += 0x7fff + ((bits >>> 16) & 1);
        return Float.intBitsToFloat(bits & 0xffff0000);
    }

    private static float[] bf16(float[] values) {
        if (values == null) return null;
        float[] rounded = new float[values.length];
        for (int i = 0; i < values.length; i++) rounded[i] = bf16(values[i]);
        return rounded;
    }

    /** Prefills every context in one step, then decodes one token per sequence (plus verification and padding). */
    private void decodeAfterPrefill(KvCacheSpec spec, int heads, int[] contexts, int extraVerified, int padding) {
        Random random = new Random(11);
        int sequences = contexts.length;
        int[] prefill = new int[sequences];
        int[] decode = new int[sequences];
        int[] after = new int[sequences];
        for (int s = 0; s < sequences; s++) {
            prefill[s] = contexts[s] - 1;
            decode[s] = 1;
            after[s] = contexts[s];
        }
        decode[sequences - 1] += extraVerified;
        after[sequences - 1] += extraVerified + padding;
        int blocks = Arrays.stream(after).map(c -> Math.ceilDiv(c, BLOCK)).sum() + 2;
        try (Caches caches = new Caches(spec, blocks, random)) {
            int[][] tables = caches.tables(after);
            step(splitAttention, spec, heads, random, caches, tables, new int[sequences], prefill, 0);
            AttentionMetadata meta = step(splitAttention, spec, heads, random, caches, tables, prefill, decode, padding);
            AttentionBatch packed = AttentionBatch.pack(meta, blocks, BLOCK);
            SplitAttentionPlan plan = SplitAttentionPlan.of(meta.numTokens(), heads, spec.kvHeads(), spec.keyDim(),
                    spec.valueDim(), spec.valuesInKeys(), packed.contextBucket(),
                    gpu.context().properties().multiprocessors(), gpu.context().kernels().largestAttentionCluster());
            System.out.printf("  (decode step: %d tokens, bucket %d, %d splits of %d keys%s, %d heads per block, tile %d)%n",
                    meta.numTokens(), packed.contextBucket(), plan.splits(), plan.chunk(),
                    plan.clustered() ? " merged in a cluster" : "", plan.headsPerBlock(), plan.tile());
        }
    }

    /**
     * Prefills each sequence's context, then runs {@code steps} decode steps of one token per sequence followed by
     * {@code padding} engine-style padding sequences, comparing the real sequences' outputs with the CPU's.
     */
    private void consecutiveDecodeSteps(KvCacheSpec spec, int heads, int[] contexts, int steps, int padding) {
        decodeSteps(spec, heads, contexts, steps, padding, new Random(5), (caches, meta, positions, random, what) -> {
            for (int layer = 0; layer < spec.layers(); layer++) {
                run(splitAttention, spec, heads, random, caches, meta, layer, what, contexts.length);
            }
        });
    }

    /** One decode step of {@link #decodeSteps}: its caches, metadata, each token's position, the random source. */
    private interface DecodeStep {
        void run(Caches caches, AttentionMetadata meta, int[] positions, Random random, String what);
    }

    /**
     * Prefills each sequence's context in one step, then hands {@code steps} decode steps of one token per sequence,
     * followed by {@code padding} engine-style padding sequences (context 1, slot -1, a borrowed block), to
     * {@code step}.
     */
    private void decodeSteps(KvCacheSpec spec, int heads, int[] contexts, int steps, int padding, Random random,
                             DecodeStep step) {
        int sequences = contexts.length;
        int[] total = new int[sequences];
        for (int s = 0; s < sequences; s++) total[s] = contexts[s] + steps;
        int blocks = Arrays.stream(total).map(c -> Math.ceilDiv(c, BLOCK)).sum() + 2;
        try (Caches caches = new Caches(spec, blocks, random)) {
            int[][] tables = caches.tables(total);
            step(splitAttention, spec, heads, random, caches, tables, new int[sequences], contexts, 0);
            for (int i = 0; i < steps; i++) {
                int tokens = sequences + padding;
                int[] queryStart = new int[tokens + 1];
                int[] context = new int[tokens];
                int[][] stepTables = new int[tokens][];
                int[] slots = new int[tokens];
                int[] positions = new int[tokens];
                for (int s = 0; s < tokens; s++) {
                    queryStart[s + 1] = s + 1;
                    if (s < sequences) {
                        positions[s] = contexts[s] + i;
                        context[s] = positions[s] + 1;
                        stepTables[s] = tables[s];
                        slots[s] = tables[s][positions[s] / BLOCK] * BLOCK + positions[s] % BLOCK;
                    } else {
                        context[s] = 1;
                        stepTables[s] = new int[] {tables[0][0]};
                        slots[s] = -1;
                    }
                }
                var meta = new AttentionMetadata(queryStart, context, stepTables, slots);
                assertTrue(AttentionBatch.pack(meta, blocks, BLOCK).oneTokenPerSequence());
                step.run(caches, meta, positions, random, "decode step " + (i + 1) + " of " + Arrays.toString(context));
            }
        }
    }

    /** Runs the same two steps on both backends and compares every output of every layer. */
    private void mixedSteps(AttentionKernel kernel, KvCacheSpec spec, int heads) {
        Random random = new Random(7);
        try (Caches caches = new Caches(spec, 64, random)) {
            int[] longSeq = caches.take(20);   // up to 320 tokens: two tiles of 256 keys, five 64-key chunks
            int[] shortSeq = caches.take(2);
            int[] verifySeq = caches.take(3);
            int[][] tables = {longSeq, shortSeq, verifySeq};
            // Step 1: prefill 290 tokens of the long sequence, 20 of the short one, 30 of the verifying one.
            step(kernel, spec, heads, random, caches, tables, new int[] {0, 0, 0}, new int[] {290, 20, 30}, 0);
            // Step 2: a chunk of 7 over the long sequence's cache, one decode token, a verification of 4, and one
            // padding token at the end (slot -1).
            step(kernel, spec, heads, random, caches, tables, new int[] {290, 20, 30}, new int[] {7, 1, 4}, 1);
        }
    }

    /**
     * One step: {@code lengths[s]} query tokens after {@code cached[s]} cached ones, then {@code padding} padding
     * tokens at the end of the last sequence (they count in its context, store nothing, attend like the others).
     */
    private AttentionMetadata step(AttentionKernel kernel, KvCacheSpec spec, int heads, Random random, Caches caches,
                                   int[][] tables, int[] cached, int[] lengths, int padding) {
        int sequences = tables.length;
        int tokens = Arrays.stream(lengths).sum() + padding;
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
        if (padding > 0) {
            // The padding tokens' context slots were never written: give them defined contents on both sides.
            int first = context[sequences - 1];
            int[] fillSlots = new int[padding];
            for (int j = 0; j < padding; j++) {
                int position = first + j;
                fillSlots[j] = tables[sequences - 1][position / BLOCK] * BLOCK + position % BLOCK;
                slots[row++] = -1;
            }
            context[sequences - 1] += padding;
            var fill = new AttentionMetadata(new int[] {0, padding}, new int[] {first + padding},
                    new int[][] {tables[sequences - 1]}, fillSlots);
            for (int layer = 0; layer < spec.layers(); layer++) run(kernel, spec, heads, random, caches, fill, layer, "fill");
        }
        queryStart[sequences] = row;
        var meta = new AttentionMetadata(queryStart, context, tables, slots);
        String what = tokens + " tokens over contexts " + Arrays.toString(context);
        for (int layer = 0; layer < spec.layers(); layer++) run(kernel, spec, heads, random, caches, meta, layer, what);
        return meta;
    }

    private void run(AttentionKernel kernel, KvCacheSpec spec, int heads, Random random, Caches caches,
                     AttentionMetadata meta, int layer, String what) {
        run(kernel, spec, heads, random, caches, meta, layer, what, meta.numTokens());
    }

    /** One layer on both backends; the outputs of the first {@code compared} tokens must agree. */
    private void run(AttentionKernel kernel, KvCacheSpec spec, int heads, Random random, Caches caches,
                     AttentionMetadata meta, int layer, String what, int compared) {
        int tokens = meta.numTokens();
        float[] q = uniform(random, tokens * heads * spec.keyDim());
        float[] k = uniform(random, tokens * spec.kvHeads() * spec.keyDim());
        float[] v = spec.valuesInKeys() ? null : uniform(random, tokens * spec.kvHeads() * spec.valueDim());
        float scale = (float) (1 / Math.sqrt(spec.keyDim()));
        String expected = what.equals("fill") ? null : expectedLastKernel;
        float[] g = forward(gpu, kernel, caches.gpu, spec, heads, meta, layer, q, k, v, scale, expected);
        // A bf16 cache stores the keys and values rounded: the CPU's f32 cache gets them rounded alike.
        boolean rounded = spec.dtype() == DType.BF16;
        float[] c = forward(cpu, cpuAttention, caches.cpu, spec, heads, meta, layer, q, rounded ? bf16(k) : k,
                rounded ? bf16(v) : v, scale, null);
        int width = heads * spec.valueDim();
        double diff = maxAbsDiff(Arrays.copyOf(g, compared * width), Arrays.copyOf(c, compared * width));
        String kernelName = (kernel == perHeadAttention ? "per-head kernel" : expected != null ? expected : "split kernel")
                + (rounded ? " (bf16 cache)" : "");
        System.out.printf("%s, %s, layer %d, %d/%d heads of %d/%d: max |CUDA - CPU| = %.3e%n", kernelName, what, layer,
                heads, spec.kvHeads(), spec.keyDim(), spec.valueDim(), diff);
        assertTrue(diff < TOLERANCE, kernelName + ", layer " + layer + ", " + what + ": CUDA differs from CPU by " + diff);
    }

    private static float[] forward(ComputeBackend backend, AttentionKernel kernel, KvCache cache, KvCacheSpec spec,
                                   int heads, AttentionMetadata meta, int layer, float[] q, float[] k, float[] v,
                                   float scale) {
        return forward(backend, kernel, cache, spec, heads, meta, layer, q, k, v, scale, null);
    }

    /** The same; {@code expectedLast}: the name of the launch the GPU must hold last before the output is read. */
    private static float[] forward(ComputeBackend backend, AttentionKernel kernel, KvCache cache, KvCacheSpec spec,
                                   int heads, AttentionMetadata meta, int layer, float[] q, float[] k, float[] v,
                                   float scale, String expectedLast) {
        int tokens = meta.numTokens();
        try (Tensor qt = backend.allocate(DType.F32, tokens, heads * spec.keyDim());
             Tensor kt = backend.allocate(DType.F32, tokens, spec.kvHeads() * spec.keyDim());
             Tensor vt = v == null ? null : backend.allocate(DType.F32, tokens, spec.kvHeads() * spec.valueDim());
             Tensor out = backend.allocate(DType.F32, tokens, heads * spec.valueDim())) {
            backend.write(q, qt);
            backend.write(k, kt);
            if (vt != null) backend.write(v, vt);
            backend.write(poison(tokens * heads * spec.valueDim()), out);
            kernel.forward(layer, qt, kt, vt, out, scale, cache, meta);
            if (expectedLast != null) {
                StepRecorder.Launch last = ((CudaBackend) backend).context().recorder().lastLaunch();
                assertEquals(expectedLast, last == null ? null : last.name(), "the kernel of layer " + layer);
            }
            return backend.read(out);
        }
    }

    /**
     * A CUDA and a CPU cache of one geometry (the CPU's always f32: a bf16 CUDA cache is compared with it holding the
     * rounded values), and the blocks not yet handed to a sequence, in random order.
     */
    private final class Caches implements AutoCloseable {
        final int blocks;
        final KvCache gpu;
        final KvCache cpu;
        private final List<Integer> free = new ArrayList<>();

        Caches(KvCacheSpec spec, int blocks, Random random) {
            this.blocks = blocks;
            for (int b = 0; b < blocks; b++) free.add(b);
            Collections.shuffle(free, random);
            this.gpu = splitAttention.allocate(spec, blocks, BLOCK, CudaPagedAttentionTest.gpu);
            var f32 = new KvCacheSpec(spec.layers(), spec.kvHeads(), spec.keyDim(), spec.valueDim(), spec.valuesInKeys(),
                    DType.F32);
            this.cpu = cpuAttention.allocate(f32, blocks, BLOCK, CudaPagedAttentionTest.cpu);
        }

        int[] take(int n) {
            int[] taken = new int[n];
            for (int i = 0; i < n; i++) taken[i] = free.removeLast();
            return taken;
        }

        int[][] tables(int[] contexts) {
            int[][] tables = new int[contexts.length][];
            for (int s = 0; s < contexts.length; s++) tables[s] = take(Math.ceilDiv(contexts[s], BLOCK));
            return tables;
        }

        @Override
        public void close() {
            gpu.close();
            cpu.close();
        }
    }
}
