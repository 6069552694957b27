package dev.kiln.backend.cuda.internal;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.tensor.DType;

/**
 * A paged KV cache in device memory, f32 or bf16 elements ({@link KvCacheSpec#dtype()}), one allocation for keys and
 * one for values (none when values live in the keys). Within a layer the layout is
 * {@code [block][kvHead][slot in block][dim]}, as on the CPU: the keys of one head for the consecutive tokens of a
 * block are contiguous.
 */
public final class DeviceKvCache implements KvCache {
    private final CudaContext context;
    private final KvCacheSpec spec;
    private final int numBlocks;
    private final int blockSize;
    private final long keys;
    private final long values;
    private final long keyLayerElements;
    private final long valueLayerElements;
    private final int elementBytes;
    private final GrowingDeviceBuffer attentionScratch;
    private volatile boolean closed;

    /**
     * Allocates zeroed storage.
     *
     * @throws IllegalArgumentException if the geometry is invalid
     */
    public DeviceKvCache(CudaContext context, KvCacheSpec spec, int numBlocks, int blockSize) {
        if (spec.layers() < 1 || spec.kvHeads() < 1 || spec.keyDim() < 1 || spec.valueDim() < 1) {
            throw new IllegalArgumentException("invalid cache geometry " + spec);
        }
        if (spec.valuesInKeys() && spec.valueDim() > spec.keyDim()) {
            throw new IllegalArgumentException("values in keys need valueDim <= keyDim: " + spec);
        }
        if (numBlocks < 1 || blockSize < 1) {
            throw new IllegalArgumentException("need at least one block of one slot, got " + numBlocks + " x " + blockSize);
        }
        if (spec.dtype() != DType.F32 && spec.dtype() != DType.BF16) {
            throw new IllegalArgumentException("the CUDA KV cache stores F32 or BF16 elements, not " + spec.dtype());
        }
        this.context = context;
        this.attentionScratch = new GrowingDeviceBuffer(context);
        this.elementBytes = spec.dtype().byteSize();
        this.spec = spec;
        this.numBlocks = numBlocks;
        this.blockSize = blockSize;
        long slots = (long) numBlocks * blockSize * spec.kvHeads();
        this.keyLayerElements = slots * spec.keyDim();
        this.valueLayerElements = spec.valuesInKeys() ? 0 : slots * spec.valueDim();
        long keyElements = keyLayerElements * spec.layers();
        long valueElements = valueLayerElements * spec.layers();
        // Whole 32-bit words (a bf16 cache of an odd element count gets 2 bytes more), zeroed as words.
        long keyWords = Math.ceilDiv(keyElements * elementBytes, Integer.BYTES);
        long valueWords = Math.ceilDiv(valueElements * elementBytes, Integer.BYTES);
        this.keys = context.allocate(keyWords * Integer.BYTES);
        long v = 0;
        try {
            if (valueWords > 0) v = context.allocate(valueWords * Integer.BYTES);
            long values = v;
            context.onStream(stream -> {
                context.driver().fill32Async(keys, 0, keyWords, stream);
                if (values != 0) context.driver().fill32Async(values, 0, valueWords, stream);
            });
        } catch (RuntimeException e) {
            context.free(keys);
            if (v != 0) context.free(v);
            throw e;
        }
        this.values = v;
    }

    @Override
    public KvCacheSpec spec() {
        return spec;
    }

    @Override
    public int blockSize() {
        return blockSize;
    }

    @Override
    public int numBlocks() {
        return numBlocks;
    }

    @Override
    public long bytes() {
        return spec.bytesPerToken() * numBlocks * blockSize;
    }

    /** Whether the cache stores bf16 elements (else f32). */
    public boolean bf16() {
        return spec.dtype() == DType.BF16;
    }

    /** Device address of one layer's keys. */
    public long keys(int layer) {
        checkOpen();
        return keys + (long) layer * keyLayerElements * elementBytes;
    }

    /** Device address of one layer's values: its keys when values live in the keys. */
    public long values(int layer) {
        checkOpen();
        return spec.valuesInKeys() ? keys(layer) : values + (long) layer * valueLayerElements * elementBytes;
    }

    /**
     * Device memory of at least {@code bytes} for the split attention's partial results, shared by every layer
     * (their kernels run one after another on the stream). It only grows, to at least twice its size each time, so
     * that once the largest batch has been seen every step finds it at the same address, which a replayed CUDA graph
     * relies on.
     */
    public synchronized long attentionScratch(long bytes) {
        checkOpen();
        return attentionScratch.atLeast(bytes);
    }

    /** The context the cache lives in. */
    public CudaContext context() {
        return context;
    }

    @Override
    public void copyBlocks(int[] from, int[] to) {
        checkOpen();
        if (from.length != to.length) throw new IllegalArgumentException(from.length + " sources for " + to.length + " destinations");
        for (int i = 0; i < from.length; i++) {
            checkBlock(from[i]);
            checkBlock(to[i]);
        }
        long keyBlock = (long) blockSize * spec.kvHeads() * spec.keyDim() * elementBytes;
        long valueBlock = (long) blockSize * spec.kvHeads() * spec.valueDim() * elementBytes;
        context.onStream(stream -> {
            for (int l = 0; l < spec.layers(); l++) {
                for (int i = 0; i < from.length; i++) {
                    context.driver().copyOnDeviceAsync(keys(l) + to[i] * keyBlock, keys(l) + from[i] * keyBlock, keyBlock,
                            stream);
                    if (!spec.valuesInKeys()) {
                        context.driver().copyOnDeviceAsync(values(l) + to[i] * valueBlock, values(l) + from[i] * valueBlock,
                                valueBlock, stream);
                    }
                }
            }
        });
    }

    void checkBlock(int block) {
        if (block < 0 || block >= numBlocks) throw new IndexOutOfBoundsException("block " + block + " of " + numBlocks);
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("KV cache is closed");
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        context.free(keys);
        if (values != 0) context.free(values);
        synchronized (this) {
            attentionScratch.close();
        }
    }
}
