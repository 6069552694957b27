package dev.kiln.attention.paged;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.attention.paged.internal.FlashAttention;
import dev.kiln.attention.paged.internal.PagedKvCache;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.backend.cpu.CpuTensor;
import org.osgi.service.component.annotations.Component;

/**
 * Paged attention for the CPU backend: an f32 cache in blocks, grouped-query and MLA-style (values inside the
 * keys) geometries, any mix of prefill chunks, decode tokens and multi-token verification queries in one batch.
 * Runs on the {@link CpuBackend}'s worker pool.
 */
@Component(service = AttentionKernel.class,
        property = {KilnProperties.NAME + "=paged", KilnProperties.BACKEND + "=cpu"})
public final class PagedAttention implements AttentionKernel {
    /** A kernel; it keeps no state, everything lives in the caches it allocates. */
    public PagedAttention() {}

    @Override
    public boolean supports(KvCacheSpec spec, ComputeBackend backend) {
        return backend instanceof CpuBackend
                && spec.dtype() == DType.F32
                && spec.layers() > 0 && spec.kvHeads() > 0 && spec.keyDim() > 0 && spec.valueDim() > 0
                && (!spec.valuesInKeys() || spec.valueDim() <= spec.keyDim());
    }

    @Override
    public KvCache allocate(KvCacheSpec spec, int numBlocks, int blockSize, ComputeBackend backend) {
        if (!supports(spec, backend)) {
            throw new IllegalArgumentException("paged attention cannot hold " + spec + " on " + backend.name()
                    + " (needs the CPU backend and F32 storage)");
        }
        return new PagedKvCache(spec, numBlocks, blockSize, ((CpuBackend) backend).pool());
    }

    @Override
    public void forward(int layer, Tensor query, Tensor key, Tensor value, Tensor out, float scale, KvCache cache,
                        AttentionMetadata batch) {
        if (!(cache instanceof PagedKvCache paged)) {
            throw new IllegalArgumentException("not a cache of this kernel: " + cache.getClass().getName());
        }
        KvCacheSpec spec = paged.spec();
        if (layer < 0 || layer >= spec.layers()) throw new IndexOutOfBoundsException("layer " + layer + " of " + spec.layers());
        CpuTensor q = CpuTensor.f32(query);
        CpuTensor k = CpuTensor.f32(key);
        CpuTensor o = CpuTensor.f32(out);
        CpuTensor v = spec.valuesInKeys() ? null : CpuTensor.f32(value);
        int tokens = batch.numTokens();
        if (q.rowLength() % spec.keyDim() != 0) {
            throw new IllegalArgumentException("query rows of " + q.rowLength() + " are not whole heads of " + spec.keyDim());
        }
        int heads = q.rowLength() / spec.keyDim();
        if (heads % spec.kvHeads() != 0) {
            throw new IllegalArgumentException(heads + " query heads are not a multiple of " + spec.kvHeads() + " KV heads");
        }
        requireRows("query", q, tokens, heads * spec.keyDim());
        requireRows("key", k, tokens, spec.kvHeads() * spec.keyDim());
        if (v != null) requireRows("value", v, tokens, spec.kvHeads() * spec.valueDim());
        requireRows("out", o, tokens, heads * spec.valueDim());
        validate(batch, paged);
        FlashAttention.writeCache(paged, layer, k, v, tokens, batch.slotMapping());
        FlashAttention.attend(paged, layer, q, o, heads, scale, batch);
    }

    private static void requireRows(String what, CpuTensor t, int rows, int rowLength) {
        if (t.rowCount() < rows || t.rowLength() != rowLength) {
            throw new IllegalArgumentException(what + " " + t + " should hold " + rows + " rows of " + rowLength);
        }
    }

    private static void validate(AttentionMetadata batch, PagedKvCache cache) {
        int sequences = batch.numSequences();
        if (batch.queryStart().length != sequences + 1 || batch.blockTables().length != sequences) {
            throw new IllegalArgumentException("metadata for " + sequences + " sequences has " + batch.queryStart().length
                    + " query starts and " + batch.blockTables().length + " block tables");
        }
        if (batch.slotMapping().length < batch.numTokens()) {
            throw new IllegalArgumentException(batch.slotMapping().length + " slots for " + batch.numTokens() + " tokens");
        }
        for (int s = 0; s < sequences; s++) {
            int queryLength = batch.queryLength(s);
            int context = batch.contextLength()[s];
            if (queryLength < 0 || context < queryLength) {
                throw new IllegalArgumentException("sequence " + s + ": " + queryLength + " query tokens in a context of " + context);
            }
            int[] table = batch.blockTables()[s];
            long capacity = (long) table.length * cache.blockSize();
            if (capacity < context) {
                throw new IllegalArgumentException("sequence " + s + ": " + table.length + " blocks cannot hold " + context + " tokens");
            }
            int needed = (context + cache.blockSize() - 1) / cache.blockSize();
            for (int b = 0; b < needed; b++) {
                if (table[b] < 0 || table[b] >= cache.numBlocks()) {
                    throw new IndexOutOfBoundsException("sequence " + s + ": block " + table[b] + " of " + cache.numBlocks());
                }
            }
        }
    }
}
