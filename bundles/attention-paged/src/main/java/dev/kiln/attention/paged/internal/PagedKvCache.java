package dev.kiln.attention.paged.internal;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.backend.cpu.WorkerPool;

/**
 * KV cache storage in f32 heap arrays, one array of keys and one of values per layer (the value arrays are absent
 * when values live in the keys).
 *
 * <p>Within a layer the layout is {@code [block][kvHead][slot in block][dim]}: the keys of one head for the
 * consecutive tokens of a block are contiguous, so attention reads long runs of memory.
 */
public final class PagedKvCache implements KvCache {
    private final KvCacheSpec spec;
    private final int numBlocks;
    private final int blockSize;
    private final WorkerPool pool;
    private final float[][] keys;
    private final float[][] values;
    private final AttentionScratch scratch;
    private volatile boolean closed;

    /**
     * Allocates zeroed storage.
     *
     * @throws IllegalArgumentException if the geometry is invalid or one layer exceeds a Java array
     */
    public PagedKvCache(KvCacheSpec spec, int numBlocks, int blockSize, WorkerPool pool) {
        if (spec.layers() < 1 || spec.kvHeads() < 1 || spec.keyDim() < 1 || spec.valueDim() < 1) {
            throw new IllegalArgumentException("invalid cache geometry " + spec);
        }
        if (spec.valuesInKeys() && spec.valueDim() > spec.keyDim()) {
            throw new IllegalArgumentException("values in keys need valueDim <= keyDim: " + spec);
        }
        if (numBlocks < 1 || blockSize < 1) {
            throw new IllegalArgumentException("need at least one block of one slot, got " + numBlocks + " x " + blockSize);
        }
        long keyFloats = (long) numBlocks * blockSize * spec.kvHeads() * spec.keyDim();
        long valueFloats = spec.valuesInKeys() ? 0 : (long) numBlocks * blockSize * spec.kvHeads() * spec.valueDim();
        if (Math.max(keyFloats, valueFloats) > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException(numBlocks + " blocks of " + blockSize + " slots exceed a Java array per layer for " + spec);
        }
        this.spec = spec;
        this.numBlocks = numBlocks;
        this.blockSize = blockSize;
        this.pool = pool;
        this.keys = new float[spec.layers()][];
        this.values = new float[spec.layers()][];
        for (int l = 0; l < spec.layers(); l++) {
            keys[l] = new float[(int) keyFloats];
            values[l] = spec.valuesInKeys() ? null : new float[(int) valueFloats];
        }
        this.scratch = new AttentionScratch(pool.threads());
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

    /** The pool attention over this cache runs on. */
    public WorkerPool pool() {
        return pool;
    }

    /** Per-worker buffers of the attention kernel. */
    AttentionScratch scratch() {
        return scratch;
    }

    /** Keys of one layer. */
    float[] keys(int layer) {
        checkOpen();
        return keys[layer];
    }

    /** Values of one layer: the key array when values live in the keys. */
    float[] values(int layer) {
        checkOpen();
        return spec.valuesInKeys() ? keys[layer] : values[layer];
    }

    /** Index of the first key element of (block, head, slot in block). */
    int keyIndex(int block, int head, int slot) {
        return ((block * spec.kvHeads() + head) * blockSize + slot) * spec.keyDim();
    }

    /** Index of the first value element of (block, head, slot in block), in {@link #values(int)}. */
    int valueIndex(int block, int head, int slot) {
        if (spec.valuesInKeys()) return keyIndex(block, head, slot);
        return ((block * spec.kvHeads() + head) * blockSize + slot) * spec.valueDim();
    }

    @Override
    public void copyBlocks(int[] from, int[] to) {
        checkOpen();
        if (from.length != to.length) throw new IllegalArgumentException(from.length + " sources for " + to.length + " destinations");
        for (int i = 0; i < from.length; i++) {
            checkBlock(from[i]);
            checkBlock(to[i]);
        }
        int keyBlock = blockSize * spec.kvHeads() * spec.keyDim();
        int valueBlock = blockSize * spec.kvHeads() * spec.valueDim();
        for (int l = 0; l < spec.layers(); l++) {
            for (int i = 0; i < from.length; i++) {
                System.arraycopy(keys[l], from[i] * keyBlock, keys[l], to[i] * keyBlock, keyBlock);
                if (values[l] != null) System.arraycopy(values[l], from[i] * valueBlock, values[l], to[i] * valueBlock, valueBlock);
            }
        }
    }

    void checkBlock(int block) {
        if (block < 0 || block >= numBlocks) throw new IndexOutOfBoundsException("block " + block + " of " + numBlocks);
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("KV cache is closed");
    }

    /** Drops the storage. */
    @Override
    public void close() {
        closed = true;
        for (int l = 0; l < keys.length; l++) {
            keys[l] = null;
            values[l] = null;
        }
    }
}
