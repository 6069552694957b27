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
import dev.kiln.backend.cuda.internal.DeviceKvCache;
import dev.kiln.backend.cuda.internal.Kernels;
import org.osgi.service.component.annotations.Component;

/**
 * Paged attention for the CUDA backend: an f32 cache in device blocks, grouped-query and MLA-style (values inside
 * the keys) geometries, any mix of prefill chunks, decode tokens and multi-token verification queries in one
 * batch. The batch's metadata goes to the device once per step (every layer reuses it); each layer then costs two
 * kernels, the cache write and the attention.
 *
 * <p>Enabled together with the {@link CudaBackend} when a device is present.
 */
@Component(service = AttentionKernel.class, enabled = false,
        property = {KilnProperties.NAME + "=paged", KilnProperties.BACKEND + "=cuda"})
public final class CudaPagedAttention implements AttentionKernel {
    /** A kernel; it keeps no state, everything lives in the caches it allocates. */
    public CudaPagedAttention() {}

    @Override
    public boolean supports(KvCacheSpec spec, ComputeBackend backend) {
        return backend instanceof CudaBackend
                && spec.dtype() == DType.F32
                && spec.layers() > 0 && spec.kvHeads() > 0 && spec.keyDim() > 0 && spec.valueDim() > 0
                && (!spec.valuesInKeys() || spec.valueDim() <= spec.keyDim())
                && spec.valueDim() <= Kernels.ATTENTION_THREADS * Kernels.ATTENTION_VALUES_PER_THREAD
                && Kernels.attentionSharedBytes(spec.keyDim()) <= Kernels.DEFAULT_SHARED_BYTES;
    }

    @Override
    public KvCache allocate(KvCacheSpec spec, int numBlocks, int blockSize, ComputeBackend backend) {
        if (!supports(spec, backend)) {
            throw new IllegalArgumentException("CUDA paged attention cannot hold " + spec + " on " + backend.name()
                    + " (needs the CUDA backend, F32 storage, values of at most "
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
        kernels.writeKv(k.pointer(), v == null ? 0 : v.pointer(), device.keys(layer), device.values(layer),
                meta + 4L * packed.slotOffset(), tokens, spec.kvHeads(), spec.keyDim(), spec.valueDim(), device.blockSize());
        kernels.pagedAttention(q.pointer(), o.pointer(), device.keys(layer), device.values(layer),
                meta + 4L * packed.sequenceOffset(), meta + 4L * packed.positionOffset(),
                meta + 4L * packed.tableStartOffset(), meta + 4L * packed.tablesOffset(), tokens, heads, spec.kvHeads(),
                spec.keyDim(), spec.valueDim(), spec.valuesInKeys() ? spec.keyDim() : spec.valueDim(), device.blockSize(),
                scale);
    }

    private static void requireRows(String what, CudaTensor t, int rows, int rowLength) {
        if (t.rowCount() < rows || t.rowLength() != rowLength) {
            throw new IllegalArgumentException(what + " " + t + " should hold " + rows + " rows of " + rowLength);
        }
    }
}
