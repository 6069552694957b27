package dev.kiln.backend.cuda;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cuda.internal.AttentionBatch;
import dev.kiln.backend.cuda.internal.CudaContext;
import dev.kiln.backend.cuda.internal.CudaTensor;
import dev.kiln.backend.cuda.internal.DecodeAttentionPlan;
import dev.kiln.backend.cuda.internal.DeviceKvCache;
import dev.kiln.backend.cuda.internal.Kernels;
import dev.kiln.backend.cuda.internal.PrefillTiles;
import dev.kiln.backend.cuda.internal.SplitAttentionPlan;
import org.osgi.service.component.annotations.Component;

/**
 * Paged attention for the CUDA backend: an f32 or bf16 cache in device blocks, grouped-query and MLA-style (values
 * inside the keys) geometries, any mix of prefill chunks, decode tokens and multi-token verification queries in one
 * batch. The batch's metadata goes to the device once per step (every layer reuses it); each layer then costs the
 * cache write and the attention: the split-context kernel and its combine, or the per-(token, head) kernel for
 * head sizes the split kernel does not take. In a decode step (one query token per sequence) the split kernel
 * writes the cache itself. Prompt chunks over a bf16 cache of 128-wide heads take the tensor-core kernel
 * ({@link PrefillTiles}), which reads each cached entry once per tile of 16 query tokens; in a batch that mixes them
 * with decoding sequences, the sequences before the chunks take the split kernel in the same layer.
 *
 * <p>The element type is the spec's {@link KvCacheSpec#dtype()}: a bf16 cache rounds keys and values to nearest
 * even when they are written and the kernels widen them back to f32 as they read them, so the arithmetic is f32
 * either way and the cache holds twice the tokens per byte.
 *
 * <p>Launch shapes, arguments and the metadata's length depend only on the token and sequence counts, the head
 * geometry and the bucket of the batch's longest context, so decode steps can be replayed as one CUDA graph. (The
 * tensor-core prefill's grid also depends on how the tokens fall into sequences; it never runs in a decode step.)
 *
 * <p>Enabled together with the {@link CudaBackend} when a device is present.
 */
@Component(service = AttentionKernel.class, enabled = false,
        property = {KilnProperties.NAME + "=paged", KilnProperties.BACKEND + "=cuda"})
public final class CudaPagedAttention implements AttentionKernel {
    /**
     * Whether decode steps write the new keys and values inside the split attention kernel instead of a
     * {@code kiln_write_kv} launch before it (system property {@code kiln.cuda.attention.fuseCacheWrite}, default
     * true; false for comparisons).
     */
    static final boolean FUSE_CACHE_WRITE =
            Boolean.parseBoolean(System.getProperty("kiln.cuda.attention.fuseCacheWrite", "true"));

    /**
     * Whether decode steps over a bf16 cache whose geometry {@code kiln_decode_attention_bf16} takes go through it
     * (system property {@code kiln.cuda.attention.decodeKernel}, default true; false for comparisons): see
     * {@link DecodeAttentionPlan}.
     */
    static final boolean DECODE_KERNEL =
            Boolean.parseBoolean(System.getProperty("kiln.cuda.attention.decodeKernel", "true"));

    /**
     * Whether prompt chunks take the tensor-core kernel where it fits (system property
     * {@code kiln.cuda.attention.prefillKernel}, default true; false for comparisons).
     */
    static final boolean PREFILL_KERNEL =
            Boolean.parseBoolean(System.getProperty("kiln.cuda.attention.prefillKernel", "true"));

    /** Fewest new tokens of a sequence that the tensor-core kernel takes: one whole tile. */
    static final int PREFILL_MIN_RUN = PrefillTiles.TOKENS;

    private final boolean splitContext;
    private final int prefillMinRun;
    private final int prefillChunkKeys;

    /** A kernel; it keeps no state, everything lives in the caches it allocates. */
    public CudaPagedAttention() {
        this(true, PREFILL_KERNEL ? PREFILL_MIN_RUN : 0, 0);
    }

    /** With {@code splitContext} false every batch takes the per-(token, head) kernel (for tests of that path). */
    CudaPagedAttention(boolean splitContext) {
        this(splitContext, 0, 0);
    }

    /**
     * @param prefillMinRun    fewest new tokens of a sequence for the tensor-core kernel (0: never)
     * @param prefillChunkKeys keys of the chunks its tiles' contexts are cut into (0: as {@link PrefillTiles#splits}
     *                         says; a multiple of 32 for tests of the cut path; a very large one: never cut)
     */
    CudaPagedAttention(boolean splitContext, int prefillMinRun, int prefillChunkKeys) {
        if (prefillChunkKeys < 0 || prefillChunkKeys % 32 != 0 && prefillChunkKeys != Integer.MAX_VALUE) {
            throw new IllegalArgumentException("prefill chunks of " + prefillChunkKeys + " keys");
        }
        this.splitContext = splitContext;
        this.prefillMinRun = prefillMinRun;
        this.prefillChunkKeys = prefillChunkKeys;
    }

    @Override
    public boolean supports(KvCacheSpec spec, ComputeBackend backend) {
        return backend instanceof CudaBackend
                && (spec.dtype() == DType.F32 || spec.dtype() == DType.BF16)
                && spec.layers() > 0 && spec.kvHeads() > 0 && spec.keyDim() > 0 && spec.valueDim() > 0
                && (!spec.valuesInKeys() || spec.valueDim() <= spec.keyDim())
                && (splitContext && splitKernelFits(spec) || perHeadKernelFits(spec));
    }

    /** Heads of whole 16-byte loads (4 f32 or 8 bf16) whose rows fit the split kernel's shared memory. */
    private static boolean splitKernelFits(KvCacheSpec spec) {
        return SplitAttentionPlan.fits(spec.keyDim(), spec.valueDim(), spec.valuesInKeys(), spec.dtype());
    }

    private static boolean perHeadKernelFits(KvCacheSpec spec) {
        return spec.valueDim() <= Kernels.ATTENTION_THREADS * Kernels.ATTENTION_VALUES_PER_THREAD
                && Kernels.attentionSharedBytes(spec.keyDim()) <= Kernels.DEFAULT_SHARED_BYTES;
    }

    @Override
    public KvCache allocate(KvCacheSpec spec, int numBlocks, int blockSize, ComputeBackend backend) {
        if (!supports(spec, backend)) {
            throw new IllegalArgumentException("CUDA paged attention cannot hold " + spec + " on " + backend.name()
                    + " (needs the CUDA backend, F32 or BF16 storage, and heads of whole 16-byte rows (4 f32 or 8 bf16"
                    + " elements) that fit the split kernel's shared memory, or values of at most "
                    + Kernels.ATTENTION_THREADS * Kernels.ATTENTION_VALUES_PER_THREAD + " and keys of at most "
                    + (Kernels.DEFAULT_SHARED_BYTES - Kernels.attentionSharedBytes(0)) / Float.BYTES + " elements)");
        }
        return new DeviceKvCache(((CudaBackend) backend).context(), spec, numBlocks, blockSize);
    }

    @Override
    public void forward(int layer, Tensor query, Tensor key, Tensor value, Tensor out, float scale, KvCache cache,
                        AttentionMetadata batch) {
        if (!(cache instanceof DeviceKvCache device)) {
            throw new IllegalArgumentException("not a cache of this kernel: " + cache.getClass().getName());
        }
        KvCacheSpec spec = device.spec();
        if (layer < 0 || layer >= spec.layers()) throw new IndexOutOfBoundsException("layer " + layer + " of " + spec.layers());
        CudaContext context = device.context();
        CudaTensor q = CudaTensor.f32(query, context);
        CudaTensor k = CudaTensor.f32(key, context);
        CudaTensor o = CudaTensor.f32(out, context);
        CudaTensor v = spec.valuesInKeys() ? null : CudaTensor.f32(value, context);
        int tokens = batch.numTokens();
        if (q.rowLength() % spec.keyDim() != 0) {
            throw new IllegalArgumentException("query rows of " + q.rowLength() + " are not whole heads of " + spec.keyDim());
        }
        int heads = q.rowLength() / spec.keyDim();
        if (heads == 0 || heads % spec.kvHeads() != 0) {
            throw new IllegalArgumentException(heads + " query heads are not a multiple of " + spec.kvHeads() + " KV heads");
        }
        requireRows("query", q, tokens, heads * spec.keyDim());
        requireRows("key", k, tokens, spec.kvHeads() * spec.keyDim());
        if (v != null) requireRows("value", v, tokens, spec.kvHeads() * spec.valueDim());
        requireRows("out", o, tokens, heads * spec.valueDim());
        AttentionBatch packed = AttentionBatch.pack(batch, device.numBlocks(), device.blockSize());
        if (tokens == 0) return;

        long meta = context.uploads().ints(packed.packed());
        Kernels kernels = context.kernels();
        boolean bf16 = device.bf16();
        long slots = meta + 4L * packed.slotOffset();
        int valueStride = spec.valuesInKeys() ? spec.keyDim() : spec.valueDim();
        // Which kernel: the split one whenever it can take the geometry (heads of whole float4 rows that fit its
        // shared memory), for decode, verification and prefill alike. It reads each key and value row once per
        // KV-head group where the per-(token, head) kernel reads it once per query head, and its split count
        // grows with the context until the device is full, while the per-head kernel has only tokens x heads
        // blocks (12 at batch-1 decode of a 12-head model, on 132 SMs). With many tokens the plan falls back to one
        // split: the per-head kernel's shape, with the group's heads sharing the reads. Measured on an H100 for the
        // 1.5B shape (check_kernels.py), the split kernel was faster in every case: batch-1 decode 1.6x at context
        // 256, 12x at 2048, 25x at 8192; 32 decode tokens at 2048 2.2x; a 512-token prefill chunk 1.8x. The
        // per-head kernel stays for head sizes that are not multiples of 4 (of 8 for a bf16 cache, whose rows the
        // split kernel reads 8 elements at a time) and query or output views that are not 16-byte aligned, which
        // float4 loads cannot read.
        // Prompt chunks over a bf16 cache of 128-wide heads go further: the tensor-core kernel reads each entry once
        // per tile of 16 tokens and multiplies on the tensor cores; per layer of the 1.5B shape on an H100 it took a
        // 2,048-token chunk 12x, one at context 8,192 21x and a 512-token one there 20x faster than the split kernel.
        boolean aligned = q.pointer() % 16 == 0 && o.pointer() % 16 == 0;
        // Prompt chunks at the end of the batch: the tensor-core kernel; the tokens before them: the kernels below.
        PrefillTiles prefill = prefillMinRun > 0 && splitContext && aligned && !packed.oneTokenPerSequence()
                && kernels.prefillAttentionAvailable(heads / spec.kvHeads())
                && PrefillTiles.fits(heads, spec.kvHeads(), spec.keyDim(), spec.valueDim(), spec.valuesInKeys(), bf16)
                ? PrefillTiles.of(packed, prefillMinRun) : null;
        int splitTokens = prefill == null ? tokens : prefill.first();
        SplitAttentionPlan plan = splitTokens > 0 && splitContext && aligned && splitKernelFits(spec) ? SplitAttentionPlan.of(splitTokens, heads, spec.kvHeads(),
                spec.keyDim(), spec.valueDim(), spec.valuesInKeys(), packed.contextBucket(),
                context.properties().multiprocessors(), kernels.largestAttentionCluster()) : null;
        long sequences = meta + 4L * packed.sequenceOffset();
        long positions = meta + 4L * packed.positionOffset();
        long tables = meta + 4L * packed.tablesOffset();
        // A decode step's cache write goes into the split kernel (one launch fewer a layer, and the cached entries'
        // loads start before the kernel ahead has finished); any other batch writes first, as its tokens attend to
        // each other's entries.
        // (The kernels read the new rows 16 bytes at a time.)
        boolean fuseWrite = plan != null && FUSE_CACHE_WRITE && packed.oneTokenPerSequence() && k.pointer() % 16 == 0
                && (v == null || v.pointer() % 16 == 0);
        DecodeAttentionPlan decodePlan = fuseWrite && bf16 && DECODE_KERNEL
                && DecodeAttentionPlan.fits(heads, spec.kvHeads(), spec.keyDim(), spec.valueDim(), spec.valuesInKeys())
                ? DecodeAttentionPlan.of(tokens, spec.kvHeads(), packed.contextBucket(),
                        context.properties().multiprocessors(), kernels.largestAttentionCluster()) : null;
        if (decodePlan != null) {
            kernels.decodeAttention(decodePlan, q.pointer(), o.pointer(), device.keys(layer), device.values(layer), positions,
                    tables, packed.tableStride(), tokens, heads, spec.kvHeads(), device.blockSize(), scale, k.pointer(),
                    v.pointer(), slots);
            return;
        }
        if (!fuseWrite) {
            kernels.writeKv(k.pointer(), v == null ? 0 : v.pointer(), device.keys(layer), device.values(layer), slots,
                    tokens, spec.kvHeads(), spec.keyDim(), spec.valueDim(), device.blockSize(), bf16);
        }
        if (splitTokens > 0 && plan != null) {
            long partialBytes = plan.partialBytes(splitTokens, heads, spec.valueDim());
            long partials = partialBytes == 0 ? 0 : device.attentionScratch(partialBytes);
            kernels.pagedAttentionSplit(plan, q.pointer(), o.pointer(), partials, device.keys(layer), device.values(layer),
                    sequences, positions, tables, packed.tableStride(), splitTokens, heads, spec.kvHeads(), spec.keyDim(),
                    spec.valueDim(), valueStride, device.blockSize(), scale, bf16,
                    fuseWrite ? k.pointer() : 0, fuseWrite && v != null ? v.pointer() : 0, fuseWrite ? slots : 0);
        } else if (splitTokens > 0) {
            if (!perHeadKernelFits(spec)) {
                throw new IllegalArgumentException("no CUDA attention kernel takes " + spec + " with "
                        + (splitContext ? "query or output rows not 16-byte aligned or heads not of whole 16-byte cache loads"
                        : "the split kernel off"));
            }
            kernels.pagedAttention(q.pointer(), o.pointer(), device.keys(layer), device.values(layer), sequences,
                    positions, tables, packed.tableStride(), splitTokens, heads, spec.kvHeads(), spec.keyDim(),
                    spec.valueDim(), valueStride, device.blockSize(), scale, bf16);
        }
        if (prefill != null) {
            // After the cache write above: a chunk's tokens attend to each other's entries. (The split kernel's
            // partial records, if any, were merged above: the scratch is free again.)
            PrefillTiles.ContextSplit split = prefillChunkKeys == 0
                    ? prefill.splits(spec.kvHeads(), context.properties().multiprocessors()) : prefill.cut(prefillChunkKeys);
            long partialBytes = prefill.partialBytes(heads, split);
            kernels.prefillAttention(prefill, split, context.uploads().ints(prefill.tiles()),
                    partialBytes == 0 ? 0 : device.attentionScratch(partialBytes), q.pointer(), o.pointer(),
                    device.keys(layer), device.values(layer), sequences, positions, tables, packed.tableStride(), heads,
                    spec.kvHeads(), device.blockSize(), scale);
        }
    }

    private static void requireRows(String what, CudaTensor t, int rows, int rowLength) {
        if (t.rowCount() < rows || t.rowLength() != rowLength) {
            throw new IllegalArgumentException(what + " " + t + " should hold " + rows + " rows of " + rowLength);
        }
    }
}
