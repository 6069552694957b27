package dev.kiln.attention.paged.internal;

import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.backend.cpu.CpuTensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Causal attention of a batch of query tokens over a paged cache, with an online softmax (flash-attention
 * style): keys are visited in tiles, each query keeps a running maximum, normaliser and weighted value sum, so no
 * query-by-key matrix is ever materialised.
 *
 * <p>Work items are (sequence, KV head, run of query tokens, run of the query heads sharing that KV head): the
 * queries of one item read each key and value tile once from memory and reuse it from cache. Items run on the
 * cache's worker pool.
 */
public final class FlashAttention {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();
    /** Key positions per tile. */
    private static final int TILE = 64;
    /** Query tokens per work item. */
    private static final int TOKENS_PER_ITEM = 16;
    /**
     * Queries per item from which a tile's keys are transposed first: scores then come out a vector of keys at a
     * time with no horizontal sums, and the transposition is shared by all the item's queries.
     */
    private static final int TRANSPOSE_MIN_QUERIES = 8;
    /**
     * Widest keys worth transposing: beyond it (MLA's 576-element latent) the transposed tile outgrows the L1 cache
     * and reading whole key rows is faster (measured).
     */
    private static final int TRANSPOSE_MAX_DIM = 256;

    private FlashAttention() {}

    /** Writes the new tokens' keys and values into their slots. */
    public static void writeCache(PagedKvCache cache, int layer, CpuTensor key, CpuTensor value, int tokens, int[] slotMapping) {
        KvCacheSpec spec = cache.spec();
        int kvHeads = spec.kvHeads(), keyDim = spec.keyDim(), valueDim = spec.valueDim();
        float[] keys = cache.keys(layer);
        float[] values = cache.values(layer);
        float[] k = key.array();
        int bs = cache.blockSize();
        for (int t = 0; t < tokens; t++) {
            int slot = slotMapping[t];
            if (slot < 0) continue; // padding token: nothing to store
            int block = slot / bs, offset = slot % bs;
            cache.checkBlock(block);
            int kRow = key.rowOffset(t);
            for (int h = 0; h < kvHeads; h++) {
                System.arraycopy(k, kRow + h * keyDim, keys, cache.keyIndex(block, h, offset), keyDim);
            }
            if (!spec.valuesInKeys()) {
                float[] v = value.array();
                int vRow = value.rowOffset(t);
                for (int h = 0; h < kvHeads; h++) {
                    System.arraycopy(v, vRow + h * valueDim, values, cache.valueIndex(block, h, offset), valueDim);
                }
            }
        }
    }

    /** One unit of parallel work. */
    private record Item(int sequence, int kvHead, int firstToken, int tokens, int firstHead, int heads) {}

    /** Attends every query token of the batch; {@code out} receives {@code heads × valueDim} values per token. */
    public static void attend(PagedKvCache cache, int layer, CpuTensor query, CpuTensor out, int heads, float scale,
                              AttentionMetadata batch) {
        KvCacheSpec spec = cache.spec();
        int group = heads / spec.kvHeads();
        Item[] items = plan(batch, spec.kvHeads(), group, cache.pool().threads());
        if (items.length == 0) return;
        float[] keys = cache.keys(layer);
        float[] values = cache.values(layer);
        cache.pool().parallelFor(items.length, 1, (worker, from, to) -> {
            for (int i = from; i < to; i++) {
                run(items[i], cache, worker, keys, values, query, out, group, scale, batch);
            }
        });
    }

    /**
     * Splits the batch into items, splitting the heads of a group further when there would otherwise be fewer
     * items than threads (single-sequence decode with few KV heads). Every item of a group reads the group's whole
     * context, so splitting further would only multiply those reads. Largest items come first so that the small
     * ones fill in at the end.
     */
    private static Item[] plan(AttentionMetadata batch, int kvHeads, int group, int threads) {
        int headsPerItem = group;
        int tokenItems = 0;
        for (int s = 0; s < batch.numSequences(); s++) {
            tokenItems += (batch.queryLength(s) + TOKENS_PER_ITEM - 1) / TOKENS_PER_ITEM;
        }
        while (headsPerItem > 1 && (long) tokenItems * kvHeads * ((group + headsPerItem - 1) / headsPerItem) < threads) {
            headsPerItem = (headsPerItem + 1) / 2;
        }
        List<Item> items = new ArrayList<>();
        for (int s = 0; s < batch.numSequences(); s++) {
            int length = batch.queryLength(s);
            for (int j = 0; j < length; j += TOKENS_PER_ITEM) {
                int tokens = Math.min(TOKENS_PER_ITEM, length - j);
                for (int g = 0; g < kvHeads; g++) {
                    for (int h = 0; h < group; h += headsPerItem) {
                        items.add(new Item(s, g, j, tokens, h, Math.min(headsPerItem, group - h)));
                    }
                }
            }
        }
        Item[] result = items.toArray(Item[]::new);
        // Later tokens of a sequence see more context: cost ≈ tokens × (context up to the last token) × heads.
        Arrays.sort(result, (a, b) -> Long.compare(cost(b, batch), cost(a, batch)));
        return result;
    }

    private static long cost(Item item, AttentionMetadata batch) {
        int s = item.sequence();
        long lastPosition = batch.contextLength()[s] - batch.queryLength(s) + item.firstToken() + item.tokens();
        return lastPosition * item.tokens() * item.heads();
    }

    private static void run(Item item, PagedKvCache cache, int worker, float[] keys, float[] values, CpuTensor query,
                            CpuTensor out, int group, float scale, AttentionMetadata batch) {
        KvCacheSpec spec = cache.spec();
        int keyDim = spec.keyDim(), valueDim = spec.valueDim();
        int s = item.sequence();
        int context = batch.contextLength()[s];
        int queryLength = batch.queryLength(s);
        int firstRow = batch.queryStart()[s] + item.firstToken();
        int firstPosition = context - queryLength + item.firstToken();
        int[] table = batch.blockTables()[s];
        int bs = cache.blockSize();
        int queries = item.tokens() * item.heads();
        int lastPosition = firstPosition + item.tokens() - 1;

        AttentionScratch scratch = cache.scratch();
        float[] max = scratch.floats(worker, 0, queries);
        float[] norm = scratch.floats(worker, 1, queries);
        float[] acc = scratch.floats(worker, 2, queries * valueDim);
        float[] scores = scratch.floats(worker, 3, TILE);
        boolean transpose = queries >= TRANSPOSE_MIN_QUERIES && keyDim <= TRANSPOSE_MAX_DIM && TILE % L == 0;
        float[] keysT = transpose ? scratch.floats(worker, 4, keyDim * TILE) : null;
        int[] keyAt = scratch.ints(worker, 0, TILE);
        int[] valueAt = scratch.ints(worker, 1, TILE);
        Arrays.fill(max, 0, queries, Float.NEGATIVE_INFINITY);
        Arrays.fill(norm, 0, queries, 0f);
        Arrays.fill(acc, 0, queries * valueDim, 0f);

        float[] q = query.array();
        int headBase = item.kvHead() * group + item.firstHead();
        for (int tileStart = 0; tileStart <= lastPosition; tileStart += TILE) {
            int tileEnd = Math.min(tileStart + TILE, lastPosition + 1);
            for (int p = tileStart; p < tileEnd; p++) {
                int block = table[p / bs];
                keyAt[p - tileStart] = cache.keyIndex(block, item.kvHead(), p % bs);
                valueAt[p - tileStart] = cache.valueIndex(block, item.kvHead(), p % bs);
            }
            if (transpose) transposeTile(keys, keyAt, tileEnd - tileStart, keyDim, keysT);
            for (int j = 0; j < item.tokens(); j++) {
                int position = firstPosition + j;
                int visible = Math.min(tileEnd, position + 1) - tileStart;
                if (visible <= 0) continue;
                int row = query.rowOffset(firstRow + j);
                for (int h = 0; h < item.heads(); h++) {
                    int qi = j * item.heads() + h;
                    int qOffset = row + (headBase + h) * keyDim;
                    if (transpose) scoresTransposed(q, qOffset, keysT, visible, keyDim, scale, scores);
                    else scores(q, qOffset, keys, keyAt, visible, keyDim, scale, scores);
                    float tileMax = Float.NEGATIVE_INFINITY;
                    for (int i = 0; i < visible; i++) tileMax = Math.max(tileMax, scores[i]);
                    float newMax = Math.max(max[qi], tileMax);
                    float correction = (float) Math.exp(max[qi] - newMax);
                    float sum = exponentiate(scores, visible, newMax);
                    norm[qi] = norm[qi] * correction + sum;
                    max[qi] = newMax;
                    accumulate(acc, qi * valueDim, correction, scores, values, valueAt, visible, valueDim);
                }
            }
        }
        float[] o = out.array();
        for (int j = 0; j < item.tokens(); j++) {
            int row = out.rowOffset(firstRow + j);
            for (int h = 0; h < item.heads(); h++) {
                int qi = j * item.heads() + h;
                float inv = 1f / norm[qi];
                int dst = row + (headBase + h) * valueDim;
                int src = qi * valueDim;
                int d = 0;
                for (; d <= valueDim - L; d += L) {
                    FloatVector.fromArray(F, acc, src + d).mul(inv).intoArray(o, dst + d);
                }
                for (; d < valueDim; d++) o[dst + d] = acc[src + d] * inv;
            }
        }
    }

    /** {@code scores[i] = scale · q · keys[keyAt[i]]} for the visible keys of a tile, four keys at a time. */
    private static void scores(float[] q, int qOffset, float[] keys, int[] keyAt, int visible, int dim, float scale,
                               float[] scores) {
        int vectorDim = dim - dim % L;
        int i = 0;
        for (; i + 4 <= visible; i += 4) {
            int k0 = keyAt[i], k1 = keyAt[i + 1], k2 = keyAt[i + 2], k3 = keyAt[i + 3];
            FloatVector a0 = FloatVector.zero(F), a1 = FloatVector.zero(F), a2 = FloatVector.zero(F), a3 = FloatVector.zero(F);
            for (int d = 0; d < vectorDim; d += L) {
                FloatVector qv = FloatVector.fromArray(F, q, qOffset + d);
                a0 = qv.fma(FloatVector.fromArray(F, keys, k0 + d), a0);
                a1 = qv.fma(FloatVector.fromArray(F, keys, k1 + d), a1);
                a2 = qv.fma(FloatVector.fromArray(F, keys, k2 + d), a2);
                a3 = qv.fma(FloatVector.fromArray(F, keys, k3 + d), a3);
            }
            float s0 = a0.reduceLanes(VectorOperators.ADD), s1 = a1.reduceLanes(VectorOperators.ADD);
            float s2 = a2.reduceLanes(VectorOperators.ADD), s3 = a3.reduceLanes(VectorOperators.ADD);
            for (int d = vectorDim; d < dim; d++) {
                float qd = q[qOffset + d];
                s0 += qd * keys[k0 + d];
                s1 += qd * keys[k1 + d];
                s2 += qd * keys[k2 + d];
                s3 += qd * keys[k3 + d];
            }
            scores[i] = s0 * scale;
            scores[i + 1] = s1 * scale;
            scores[i + 2] = s2 * scale;
            scores[i + 3] = s3 * scale;
        }
        for (; i < visible; i++) {
            int k0 = keyAt[i];
            FloatVector a0 = FloatVector.zero(F);
            for (int d = 0; d < vectorDim; d += L) {
                a0 = FloatVector.fromArray(F, q, qOffset + d).fma(FloatVector.fromArray(F, keys, k0 + d), a0);
            }
            float s0 = a0.reduceLanes(VectorOperators.ADD);
            for (int d = vectorDim; d < dim; d++) s0 += q[qOffset + d] * keys[k0 + d];
            scores[i] = s0 * scale;
        }
    }

    /** {@code keysT[d·TILE + i] = keys[keyAt[i] + d]}, zero for the positions past the tile's end. */
    private static void transposeTile(float[] keys, int[] keyAt, int count, int dim, float[] keysT) {
        for (int i = 0; i < count; i++) {
            int k = keyAt[i];
            for (int d = 0; d < dim; d++) keysT[d * TILE + i] = keys[k + d];
        }
        if (count < TILE) {
            for (int d = 0; d < dim; d++) Arrays.fill(keysT, d * TILE + count, (d + 1) * TILE, 0f);
        }
    }

    /** {@link #scores} from a transposed tile: one vector of keys at a time, two vectors per pass over the dims. */
    private static void scoresTransposed(float[] q, int qOffset, float[] keysT, int visible, int dim, float scale,
                                         float[] scores) {
        int vectors = (visible + L - 1) / L;
        for (int v = 0; v < vectors; v += 2) {
            int i0 = v * L;
            if (v + 1 < vectors) {
                int i1 = i0 + L;
                FloatVector a0 = FloatVector.zero(F), a1 = FloatVector.zero(F);
                for (int d = 0; d < dim; d++) {
                    FloatVector qd = FloatVector.broadcast(F, q[qOffset + d]);
                    a0 = FloatVector.fromArray(F, keysT, d * TILE + i0).fma(qd, a0);
                    a1 = FloatVector.fromArray(F, keysT, d * TILE + i1).fma(qd, a1);
                }
                a0.mul(scale).intoArray(scores, i0);
                a1.mul(scale).intoArray(scores, i1);
            } else {
                FloatVector a0 = FloatVector.zero(F);
                for (int d = 0; d < dim; d++) {
                    a0 = FloatVector.fromArray(F, keysT, d * TILE + i0).fma(FloatVector.broadcast(F, q[qOffset + d]), a0);
                }
                a0.mul(scale).intoArray(scores, i0);
            }
        }
    }

    /** Replaces {@code scores[i]} by {@code exp(scores[i] - max)} and returns their sum. */
    private static float exponentiate(float[] scores, int count, float max) {
        FloatVector sum = FloatVector.zero(F);
        int i = 0;
        for (; i <= count - L; i += L) {
            FloatVector e = FloatVector.fromArray(F, scores, i).sub(max).lanewise(VectorOperators.EXP);
            e.intoArray(scores, i);
            sum = sum.add(e);
        }
        float total = sum.reduceLanes(VectorOperators.ADD);
        for (; i < count; i++) {
            float e = (float) Math.exp(scores[i] - max);
            scores[i] = e;
            total += e;
        }
        return total;
    }

    /**
     * {@code acc = acc · correction + Σ_i weights[i] · values[valueAt[i]]}, four vectors of dims at a time so that
     * each weight is broadcast once per four loads of values.
     */
    private static void accumulate(float[] acc, int accOffset, float correction, float[] weights, float[] values,
                                   int[] valueAt, int count, int dim) {
        int d = 0;
        for (; d <= dim - 4 * L; d += 4 * L) {
            int o = accOffset + d;
            FloatVector a0 = FloatVector.fromArray(F, acc, o).mul(correction);
            FloatVector a1 = FloatVector.fromArray(F, acc, o + L).mul(correction);
            FloatVector a2 = FloatVector.fromArray(F, acc, o + 2 * L).mul(correction);
            FloatVector a3 = FloatVector.fromArray(F, acc, o + 3 * L).mul(correction);
            for (int i = 0; i < count; i++) {
                FloatVector p = FloatVector.broadcast(F, weights[i]);
                int v = valueAt[i] + d;
                a0 = FloatVector.fromArray(F, values, v).fma(p, a0);
                a1 = FloatVector.fromArray(F, values, v + L).fma(p, a1);
                a2 = FloatVector.fromArray(F, values, v + 2 * L).fma(p, a2);
                a3 = FloatVector.fromArray(F, values, v + 3 * L).fma(p, a3);
            }
            a0.intoArray(acc, o);
            a1.intoArray(acc, o + L);
            a2.intoArray(acc, o + 2 * L);
            a3.intoArray(acc, o + 3 * L);
        }
        for (; d <= dim - L; d += L) {
            FloatVector a = FloatVector.fromArray(F, acc, accOffset + d).mul(correction);
            for (int i = 0; i < count; i++) {
                a = FloatVector.fromArray(F, values, valueAt[i] + d).fma(FloatVector.broadcast(F, weights[i]), a);
            }
            a.intoArray(acc, accOffset + d);
        }
        for (; d < dim; d++) {
            float a = acc[accOffset + d] * correction;
            for (int i = 0; i < count; i++) a += weights[i] * values[valueAt[i] + d];
            acc[accOffset + d] = a;
        }
    }
}
