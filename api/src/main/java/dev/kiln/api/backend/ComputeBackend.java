package dev.kiln.api.backend;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;

/**
 * A device that executes the primitive operations models are written against (service property
 * {@code kiln.name}: {@code cpu}, {@code cuda}, ...). A model architecture is written once against this
 * interface and runs on every backend.
 *
 * <p>Activations are 2-D tensors {@code [tokens, features]} of {@link DType#F32} unless stated otherwise. The
 * operations act on the rows present in their arguments, so the same workspace serves batches of any size up to
 * its capacity (see {@link Tensor#rows}). Calls are issued from one thread per model forward; a backend may run
 * them asynchronously (a GPU stream) as long as {@link #read} returns the values after all prior operations.
 */
public interface ComputeBackend {
    /** The backend's name, equal to its {@code kiln.name} service property. */
    String name();

    /** What the backend runs on, for logs, stats and the console. */
    DeviceInfo device();

    /** Allocates an uninitialised tensor in this backend's memory. */
    Tensor allocate(DType dtype, long... shape);

    /** Copies host values into an F32 tensor, starting at its first element. */
    void write(float[] source, Tensor destination);

    /** Copies an F32 tensor's values (all of its rows) to the host. */
    float[] read(Tensor source);

    /**
     * Places a 2-D checkpoint tensor {@code [rows, columns]} as a weight in its stored floating-point format
     * (F32, F16 or BF16). A CPU backend keeps it memory-mapped; a GPU backend copies it to the device once.
     *
     * @throws IllegalArgumentException if the tensor is not 2-D or not F32/F16/BF16
     */
    Weight denseWeight(CheckpointTensor tensor);

    /** Converts a 1-D checkpoint tensor (a norm's scale, a bias) to an F32 tensor of shape {@code [1, n]}. */
    Tensor vector(CheckpointTensor tensor);

    /** {@code out[t] = table[ids[t]]}: embedding lookup. */
    void embed(Weight table, int[] ids, Tensor out);

    /**
     * Embedding lookup where some ids are {@linkplain PendingTokens#placeholder placeholders} for tokens of an
     * earlier step still being chosen: {@code out[t] = table[id]} with {@code id} the pending token for a placeholder.
     * The default waits for the pending tokens and embeds the ids they resolve to; a backend that
     * {@linkplain #overlapsSteps overlaps steps} reads them where the earlier step leaves them, without waiting.
     *
     * @param pending the tokens the placeholders stand for, or null when {@code ids} has none
     * @since 1.5
     */
    default void embed(Weight table, int[] ids, PendingTokens pending, Tensor out) {
        embed(table, PendingTokens.resolve(ids, pending), out);
    }

    /** {@code out = x · weightᵀ} for every row of x: the weight's own kernel (dense or quantized) does the work. */
    default void matmul(Tensor x, Weight weight, Tensor out) {
        weight.multiply(x, out);
    }

    /** {@code x[t] += bias} for every row t, bias of shape {@code [1, n]}. */
    void addBias(Tensor x, Tensor bias);

    /** {@code out[t] = x[t] / sqrt(mean(x[t]²) + eps) * scale}; out may be x. */
    void rmsNorm(Tensor x, Tensor scale, float eps, Tensor out);

    /** {@code accumulator += x}, element-wise (the residual connection). */
    void add(Tensor accumulator, Tensor x);

    /** {@code out = silu(gate) * up}, element-wise; out may be gate. */
    void siluAndMul(Tensor gate, Tensor up, Tensor out);

    /**
     * {@code dst[r, dstOffset + j] = src[r, srcOffset + j]} for {@code j < width} and every row r of src (dst has at
     * least as many rows): splitting a projection into parts (MLA's rope and "nope" halves) or assembling one.
     * The default goes through host memory; backends override it.
     */
    default void copyColumns(Tensor src, int srcOffset, Tensor dst, int dstOffset, int width) {
        int rows = src.rowCount();
        int sn = src.rowLength();
        int dn = dst.rowLength();
        if (srcOffset < 0 || dstOffset < 0 || width < 0 || srcOffset + width > sn || dstOffset + width > dn || dst.rowCount() < rows) {
            throw new IllegalArgumentException("column copy out of bounds");
        }
        float[] s = read(src);
        float[] d = read(dst);
        for (int r = 0; r < rows; r++) System.arraycopy(s, r * sn + srcOffset, d, r * dn + dstOffset, width);
        write(d, dst);
    }

    /**
     * {@link #copyColumns(Tensor, int, Tensor, int, int)} for {@code count} column ranges at once, range i from
     * {@code srcOffset + i * srcStride} to {@code dstOffset + i * dstStride}: a part of every head (MLA's rope part of
     * each query head). Strides are not negative and the destination ranges do not overlap ({@code dstStride >= width}
     * when there are several). The default copies range by range; backends override it.
     *
     * @throws IllegalArgumentException if a range falls outside its rows or destination ranges overlap
     * @since 1.4
     */
    default void copyColumns(Tensor src, int srcOffset, int srcStride, Tensor dst, int dstOffset, int dstStride, int width,
                             int count) {
        requireColumnRanges(src, srcOffset, srcStride, dst, dstOffset, dstStride, width, count);
        for (int i = 0; i < count; i++) copyColumns(src, srcOffset + i * srcStride, dst, dstOffset + i * dstStride, width);
    }

    /**
     * The contract of {@link #copyColumns(Tensor, int, int, Tensor, int, int, int, int)}, which every implementation
     * checks before it copies: ranges inside their rows, no negative stride, destination ranges apart, and at least
     * as many destination rows as source rows.
     *
     * @throws IllegalArgumentException naming the ranges when they break it
     * @since 1.4
     */
    static void requireColumnRanges(Tensor src, int srcOffset, int srcStride, Tensor dst, int dstOffset, int dstStride,
                                    int width, int count) {
        long last = Math.max(count - 1, 0);
        if (count < 0 || width < 0 || srcOffset < 0 || dstOffset < 0 || srcStride < 0 || dstStride < 0
                || (count > 1 && dstStride < width) || dst.rowCount() < src.rowCount()
                || srcOffset + last * srcStride + width > src.rowLength() || dstOffset + last * dstStride + width > dst.rowLength()) {
            throw new IllegalArgumentException(count + " column ranges of " + width + " from " + srcOffset + " every "
                    + srcStride + " of rows of " + src.rowLength() + " into " + dstOffset + " every " + dstStride
                    + " of rows of " + dst.rowLength() + " are out of bounds or overlap");
        }
    }

    /**
     * For every head h of {@code weights.length} and row t of x:
     * {@code out[t, outOffset + h·outStride + r] = Σ_c W_h[r, c] · x[t, inOffset + h·inStride + c]}: a product per head
     * on its own slice of the row (MLA's absorption: each head's query into latent space, each head's latent output
     * back to its value). The weights share one shape. The default copies each head's slice into {@code inScratch}
     * ({@code [T, columns]}), multiplies it into {@code outScratch}
     * ({@code [T, rows]}) and copies that out; backends override it with one pass over all heads.
     *
     * @since 1.4
     */
    default void matmulPerHead(Tensor x, int inOffset, int inStride, Weight[] weights, Tensor out, int outOffset,
                               int outStride, Tensor inScratch, Tensor outScratch) {
        for (int h = 0; h < weights.length; h++) {
            copyColumns(x, inOffset + h * inStride, inScratch, 0, weights[h].columns());
            matmul(inScratch, weights[h], outScratch);
            copyColumns(outScratch, 0, out, outOffset + h * outStride, weights[h].rows());
        }
    }

    /**
     * {@code dst[i] = src[rows[i]]}: collecting the tokens routed to one expert. The default goes through host
     * memory; backends override it.
     */
    default void gatherRows(Tensor src, int[] rows, Tensor dst) {
        int n = src.rowLength();
        if (dst.rowLength() != n || dst.rowCount() < rows.length) throw new IllegalArgumentException("gather shape mismatch");
        float[] s = read(src);
        float[] d = read(dst);
        for (int i = 0; i < rows.length; i++) System.arraycopy(s, rows[i] * n, d, i * n, n);
        write(d, dst);
    }

    /**
     * {@code dst[rows[i]] += scales[i] * src[i]}: adding an expert's outputs back to the tokens it served, weighted
     * by their routing weights. Rows may repeat. The default goes through host memory; backends override it.
     */
    default void scatterAddRows(Tensor src, int[] rows, float[] scales, Tensor dst) {
        int n = src.rowLength();
        if (dst.rowLength() != n || src.rowCount() < rows.length || scales.length != rows.length) {
            throw new IllegalArgumentException("scatter shape mismatch");
        }
        float[] s = read(src);
        float[] d = read(dst);
        for (int i = 0; i < rows.length; i++) {
            for (int j = 0; j < n; j++) d[rows[i] * n + j] += scales[i] * s[i * n + j];
        }
        write(d, dst);
    }

    /**
     * The routed experts of one mixture-of-experts layer run on this backend, or {@code null} when the backend has no
     * such path for these weights (the default): the model then reads the router's logits, routes on the host and
     * runs each chosen expert through {@link #matmul}, {@link #gatherRows} and {@link #scatterAddRows}.
     *
     * @param routing  the routing rule
     * @param gate     per routed expert, its gate projection {@code [width, hidden]}
     * @param up       per routed expert, its up projection {@code [width, hidden]}
     * @param down     per routed expert, its down projection {@code [hidden, width]}
     * @param capacity the most tokens one call will take
     * @since 1.4
     */
    default RoutedExperts routedExperts(ExpertRouting routing, Weight[] gate, Weight[] up, Weight[] down, int capacity) {
        return null;
    }

    /**
     * How many sequences a decode step of {@code sequences} single-token sequences should be padded to. A backend that
     * replays recorded steps (CUDA graphs) rounds up to a few sizes, so that steps keep repeating while requests come
     * and go; the engine then adds sequences of one token whose key and value are not stored (slot -1) and whose
     * logits nobody reads. The default pads nothing.
     *
     * @return at least {@code sequences}
     * @since 1.3
     */
    default int decodeBatchSize(int sequences) {
        return sequences;
    }

    /**
     * Whether {@link #argmaxRows} and {@link #sampleRows} run where the tensors live, so that an engine gains by
     * calling them instead of {@link #read} (a GPU backend: one int per row crosses the bus instead of a vocabulary of
     * floats). False by default: on the CPU the logits are already in host memory and the engine's own sampler is
     * the faster and more general path.
     */
    default boolean choosesTokensOnDevice() {
        return false;
    }

    /**
     * Whether an engine gains by queueing a step before the tokens of the step ahead of it are read back: true when
     * {@link #argmaxRowsPending} and {@link #sampleRowsPending} return before the work that chooses the tokens is
     * done, and {@link #embed(Weight, int[], PendingTokens, Tensor)} reads pending tokens where they are chosen (a
     * GPU, whose queue then never runs dry between steps). False by default: the default methods choose at once.
     *
     * @since 1.5
     */
    default boolean overlapsSteps() {
        return false;
    }

    /**
     * {@link #argmaxRows}, with the result left pending: a backend that {@linkplain #overlapsSteps overlaps steps}
     * queues the choice and returns; the default chooses at once.
     *
     * @since 1.5
     */
    default PendingTokens argmaxRowsPending(Tensor x) {
        return PendingTokens.of(argmaxRows(x));
    }

    /**
     * {@link #sampleRows}, with the result left pending: a backend that {@linkplain #overlapsSteps overlaps steps}
     * queues the draws and returns; the default draws at once. The arguments are read before the call returns.
     *
     * @since 1.5
     */
    default PendingTokens sampleRowsPending(Tensor x, float[] params, double[] uniforms) {
        return PendingTokens.of(sampleRows(x, params, uniforms));
    }

    /**
     * For every row of an F32 tensor, the column of its largest value: the first such column on ties, column 0 when
     * every value is negative infinity (NaN never compares larger). What greedy decoding picks; an engine uses it
     * instead of {@link #read} when no request of a step needs more than that token, so that a GPU backend sends back
     * one int per row instead of a vocabulary of floats. The default reads the tensor; backends override it.
     */
    default int[] argmaxRows(Tensor x) {
        int rows = x.rowCount();
        int n = x.rowLength();
        float[] v = read(x);
        int[] best = new int[rows];
        for (int r = 0; r < rows; r++) best[r] = argmax(v, r * n, n);
        return best;
    }

    /** The column of the largest of {@code v[base .. base + n)}, the first on ties (0 when none is larger than v[base]). */
    private static int argmax(float[] v, int base, int n) {
        int index = 0;
        float max = v[base];
        for (int i = 1; i < n; i++) {
            if (v[base + i] > max) {
                max = v[base + i];
                index = i;
            }
        }
        return index;
    }

    /** The values of {@code v[base .. base + n)} that are at least {@code low}, ascending. */
    private static float[] sortedAtLeast(float[] v, int base, int n, double low) {
        int count = 0;
        for (int i = 0; i < n; i++) if (v[base + i] >= low) count++;
        float[] kept = new float[count];
        for (int i = 0, j = 0; i < n; i++) if (v[base + i] >= low) kept[j++] = v[base + i];
        java.util.Arrays.sort(kept);
        return kept;
    }

    /**
     * Draws one column per row of an F32 tensor of logits, where the backend holds them: what a step needs when its
     * requests sample with temperature, top-k, top-p and min-p only. For row r, with {@code p = params[4r ..]}:
     * temperature {@code T = p[0]} (0: the largest logit, as {@link #argmaxRows}), top-k {@code k = (int) p[1]}
     * (0: off), top-p {@code p[2]}, min-p {@code p[3]}, and a uniform number {@code u = uniforms[r]} in [0, 1):
     * <ol>
     *   <li>candidates: columns with a logit of at least {@code max + T ln(minP)} (all when minP is 0), then, when
     *       k is on, of at least the k-th largest such logit (ties at the boundary stay);</li>
     *   <li>weights {@code w = exp((logit - max) / T)}; when top-p is below 1, only candidates with a logit of at least
     *       the largest threshold whose candidates carry {@code topP} of the total weight stay (ties stay);</li>
     *   <li>the column whose cumulative weight, in column order, first exceeds {@code u} times the total.</li>
     * </ol>
     * The same distribution as the usual top-k/top-p/min-p sampler; which column a given u selects depends on the
     * column order, not the probability order. The default reads the logits and draws on the host in double
     * precision; backends override it.
     *
     * @param params   four numbers per row, as above
     * @param uniforms one number in [0, 1) per row (ignored where T is 0)
     */
    default int[] sampleRows(Tensor x, float[] params, double[] uniforms) {
        int rows = x.rowCount();
        int n = x.rowLength();
        if (params.length < 4 * rows || uniforms.length < rows) {
            throw new IllegalArgumentException("sampling parameters for " + params.length / 4 + " and " + uniforms.length
                    + " rows, the tensor has " + rows);
        }
        float[] v = read(x);
        int[] chosen = new int[rows];
        double[] weights = new double[n];
        for (int r = 0; r < rows; r++) {
            int base = r * n;
            int best = argmax(v, base, n);
            float max = v[base + best];
            double temperature = params[4 * r];
            if (temperature <= 0 || max == Float.NEGATIVE_INFINITY || Float.isNaN(max)) {
                chosen[r] = best;
                continue;
            }
            int k = (int) params[4 * r + 1];
            double topP = params[4 * r + 2];
            double minP = params[4 * r + 3];
            double low = minP > 0 ? max + temperature * Math.log(minP) : Double.NEGATIVE_INFINITY;
            if (k > 0) {
                float[] candidates = sortedAtLeast(v, base, n, low);
                if (k < candidates.length) low = Math.max(low, candidates[candidates.length - k]);
            }
            double total = 0;
            for (int i = 0; i < n; i++) {
                float l = v[base + i];
                weights[i] = l >= low ? Math.exp((l - max) / temperature) : 0;
                total += weights[i];
            }
            if (topP < 1) {
                // The largest logit threshold t whose candidates (logit >= t) carry topP of the weight, walking the
                // candidates from the largest; ties stay together. Each weight as in the loop above.
                float[] candidates = sortedAtLeast(v, base, n, low);
                double mass = 0;
                float threshold = candidates[candidates.length - 1];
                for (int j = candidates.length - 1; j >= 0; j--) {
                    float l = candidates[j];
                    mass += Math.exp((l - max) / temperature);
                    if (j > 0 && candidates[j - 1] == l) continue;
                    threshold = l;
                    if (mass >= topP * total) break;
                }
                total = 0;
                for (int i = 0; i < n; i++) {
                    if (v[base + i] < threshold) weights[i] = 0;
                    total += weights[i];
                }
            }
            double target = uniforms[r] * total;
            double cumulative = 0;
            int pick = best;
            for (int i = 0; i < n; i++) {
                if (weights[i] == 0) continue;
                cumulative += weights[i];
                pick = i;
                if (cumulative > target) break;
            }
            chosen[r] = pick;
        }
        return chosen;
    }

    /** {@code x *= factor}, element-wise. The default goes through host memory; backends override it. */
    default void scale(Tensor x, float factor) {
        float[] v = read(x);
        for (int i = 0; i < v.length; i++) v[i] *= factor;
        write(v, x);
    }

    /**
     * Creates a rotary position embedding with the given inverse frequencies (one per rotated pair, after any
     * scaling such as llama3 or YaRN has been applied by the architecture).
     *
     * @param inverseFrequencies  {@code rotaryDim / 2} frequencies
     * @param magnitude           factor applied to cos and sin (YaRN's attention factor; 1 otherwise)
     * @param layout              which elements of a head form a rotated pair
     */
    RotaryEmbedding rotaryEmbedding(float[] inverseFrequencies, float magnitude, RotaryEmbedding.Layout layout);

    /**
     * Releases what the backend holds (thread pools, contexts). Weights and tensors it made are invalid after.
     */
    default void shutdown() {}
}
