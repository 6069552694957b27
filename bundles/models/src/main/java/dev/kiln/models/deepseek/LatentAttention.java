package dev.kiln.models.deepseek;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.RotaryEmbedding;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.models.Linear;
import dev.kiln.models.WeightLoader;

/**
 * Multi-head latent attention (MLA) of one layer. The cache keeps, per token, only the normalised latent
 * {@code c} ({@code kv_lora_rank}) and the rotated rope key {@code k_rope} shared by all heads; per-head keys and
 * values are {@code kv_b_proj}'s expansions of the latent:
 *
 * <pre>
 * q = q_b(rmsNorm(q_a(x)))  or  q_proj(x)              per head: [q_nope (nope) | q_rope (rope)]
 * [c | k_rope] = kv_a_proj_with_mqa(x);  c = rmsNorm(c)
 * rotate q_rope and k_rope by position (the original interleaved pairs)
 * per head h:  k_h = [W_UK_h · c | k_rope],  v_h = W_UV_h · c     (W_UK_h, W_UV_h: head h's rows of kv_b_proj)
 * o = o_proj(concat_h softmax(q_h · k_hᵀ · scale) · v_h)
 * </pre>
 *
 * Two exact rewritings of the same attention:
 * <ul>
 *   <li><b>absorbed</b> (any step, decode above all): {@code q_nope · W_UK_h · c = (W_UK_hᵀ q_nope) · c}, so each
 *       head's query is moved into latent space once ({@code [W_UK_hᵀ q_nope | q_rope]}) and all heads attend over
 *       the cached entries {@code [c | k_rope]} themselves, as multi-query attention whose value is {@code c};
 *       {@code W_UV_h} is applied to each head's output afterwards. Nothing per head is ever cached or expanded.</li>
 *   <li><b>expanded</b> ("naive", prefill of fresh sequences): keys and values of the step's tokens are expanded
 *       with {@code kv_b_proj} and attended as ordinary multi-head attention (cheaper per token pair when the
 *       latent is wider than a head, as it is in every DeepSeek model); the latents are stored all the same.</li>
 * </ul>
 */
final class LatentAttention {
    private final ComputeBackend backend;
    private final AttentionKernel kernel;
    private final ExpandedAttention expanded;
    private final RotaryEmbedding rotary;
    private final DeepSeekConfig c;

    private final Linear queryDown;
    private final Tensor queryNorm;
    private final Linear queryUp;
    private final Linear latentDown;
    private final Tensor latentNorm;
    private final Weight latentUp;
    /** Per head, {@code W_UK_hᵀ} as a weight {@code [kv_lora_rank, nope]}: query nope part to latent space. */
    private final Weight[] keyAbsorption;
    /** Per head, {@code W_UV_h} as a weight {@code [value, kv_lora_rank]}: latent-space output to the value. */
    private final Weight[] valueUp;
    private final Linear output;

    /**
     * Loads layer {@code prefix} (e.g. {@code model.layers.3.self_attn}) and derives the absorption matrices.
     */
    LatentAttention(String prefix, DeepSeekConfig c, WeightLoader weights, DerivedWeights derived,
                    ComputeBackend backend, AttentionKernel kernel, ExpandedAttention expanded, RotaryEmbedding rotary) {
        this.backend = backend;
        this.kernel = kernel;
        this.expanded = expanded;
        this.rotary = rotary;
        this.c = c;
        int hidden = c.hiddenSize();
        int heads = c.heads();
        int queryWidth = heads * c.queryHeadDim();
        String p = prefix + ".";
        if (c.qLoraRank() > 0) {
            queryDown = weights.linear(p + "q_a_proj", c.qLoraRank(), hidden, c.attentionBias());
            queryNorm = weights.vector(p + "q_a_layernorm.weight", c.qLoraRank());
            queryUp = weights.linear(p + "q_b_proj", queryWidth, c.qLoraRank(), false);
        } else {
            queryDown = null;
            queryNorm = null;
            queryUp = weights.linear(p + "q_proj", queryWidth, hidden, c.attentionBias());
        }
        latentDown = weights.linear(p + "kv_a_proj_with_mqa", c.latentEntryDim(), hidden, c.attentionBias());
        latentNorm = weights.vector(p + "kv_a_layernorm.weight", c.kvLoraRank());
        int perHead = c.nopeHeadDim() + c.valueHeadDim();
        latentUp = weights.projection(p + "kv_b_proj", heads * perHead, c.kvLoraRank());
        output = weights.linear(p + "o_proj", hidden, heads * c.valueHeadDim(), c.attentionBias());

        // kv_b_proj's rows for head h: nope rows of W_UK_h, then value rows of W_UV_h, each [*, kv_lora_rank].
        float[] transposed = derived.transposedValues(latentUp); // [kv_lora_rank, heads × perHead]
        int rank = c.kvLoraRank();
        int rows = heads * perHead;
        keyAbsorption = new Weight[heads];
        valueUp = new Weight[heads];
        for (int h = 0; h < heads; h++) {
            float[] key = new float[rank * c.nopeHeadDim()];
            for (int r = 0; r < rank; r++) {
                System.arraycopy(transposed, r * rows + h * perHead, key, r * c.nopeHeadDim(), c.nopeHeadDim());
            }
            float[] value = new float[c.valueHeadDim() * rank];
            for (int j = 0; j < c.valueHeadDim(); j++) {
                for (int r = 0; r < rank; r++) value[j * rank + r] = transposed[r * rows + h * perHead + c.nopeHeadDim() + j];
            }
            keyAbsorption[h] = derived.dense(p + "kv_b_proj[head " + h + "].key_absorption", key, rank, c.nopeHeadDim());
            valueUp[h] = derived.dense(p + "kv_b_proj[head " + h + "].value", value, c.valueHeadDim(), rank);
        }
    }

    /**
     * Attends the step's tokens and leaves {@code o_proj} of the result in {@code step.projected()}; writes each
     * token's latent entry to layer {@code cacheLayer} of the cache.
     *
     * @param normed   {@code [T, hidden]}, the layer's normalised input
     * @param expand   whether to take the expanded path (only for batches starting from empty contexts)
     */
    void forward(Tensor normed, Activations.Step step, int[] positions, KvCache cache, int cacheLayer,
                 AttentionMetadata batch, boolean expand) {
        float eps = c.rmsNormEps();
        Tensor query = step.query();
        Tensor entry = step.latentEntry();
        Tensor latent = step.latent();
        // The latent's projection right after the query's first one: both read the normed input, and a GPU backend
        // then makes them one launch.
        if (queryDown != null) {
            queryDown.apply(backend, normed, step.queryLow());
            latentDown.apply(backend, normed, entry);
            backend.rmsNorm(step.queryLow(), queryNorm, eps, step.queryLow());
            queryUp.apply(backend, step.queryLow(), query);
        } else {
            queryUp.apply(backend, normed, query);
            latentDown.apply(backend, normed, entry);
        }
        rotary.apply(query, positions, c.heads(), c.queryHeadDim(), c.nopeHeadDim());

        // The cache entry [c | k_rope], built in place: rotate the rope key, normalise the latent.
        rotary.apply(entry, positions, 1, c.latentEntryDim(), c.kvLoraRank());
        backend.copyColumns(entry, 0, latent, 0, c.kvLoraRank());
        backend.rmsNorm(latent, latentNorm, eps, latent);
        backend.copyColumns(latent, 0, entry, 0, c.kvLoraRank());

        if (expand) expanded(step, cache, cacheLayer, batch);
        else absorbed(step, cache, cacheLayer, batch);
        output.apply(backend, step.attention(), step.projected());
    }

    private void absorbed(Activations.Step step, KvCache cache, int cacheLayer, AttentionMetadata batch) {
        int nope = c.nopeHeadDim(), rope = c.ropeHeadDim(), rank = c.kvLoraRank(), value = c.valueHeadDim();
        int queryHead = c.queryHeadDim(), entry = c.latentEntryDim(), heads = c.heads();
        // Each head's query as [W_UK_hᵀ q_nope | q_rope], all heads in one product and one copy.
        backend.matmulPerHead(step.query(), 0, queryHead, keyAbsorption, step.absorbedQuery(), 0, entry,
                step.headNope(), step.headLatent());
        backend.copyColumns(step.query(), nope, queryHead, step.absorbedQuery(), rank, entry, rope, heads);
        kernel.forward(cacheLayer, step.absorbedQuery(), step.latentEntry(), null, step.latentOut(),
                c.attentionScale(), cache, batch);
        backend.matmulPerHead(step.latentOut(), 0, rank, valueUp, step.attention(), 0, value, step.headLatent(),
                step.headValue());
    }

    private void expanded(Activations.Step step, KvCache cache, int cacheLayer, AttentionMetadata batch) {
        int nope = c.nopeHeadDim(), rope = c.ropeHeadDim(), value = c.valueHeadDim(), rank = c.kvLoraRank();
        int queryHead = c.queryHeadDim(), perHead = nope + value;
        backend.matmul(step.latent(), latentUp, step.expandedKv());
        for (int h = 0; h < c.heads(); h++) {
            backend.copyColumns(step.expandedKv(), h * perHead, step.expandedKey(), h * queryHead, nope);
            backend.copyColumns(step.latentEntry(), rank, step.expandedKey(), h * queryHead + nope, rope);
            backend.copyColumns(step.expandedKv(), h * perHead + nope, step.expandedValue(), h * value, value);
        }
        expanded.attend(step.query(), step.expandedKey(), step.expandedValue(), step.attention(), c.attentionScale(),
                batch);
        // Later steps attend over the latents, which the kernel writes only as part of an attention call: attend
        // once more with a single query head (the entry itself, output discarded), 1/heads of the absorbed work.
        kernel.forward(cacheLayer, step.latentEntry(), step.latentEntry(), null, step.latent(), c.attentionScale(),
                cache, batch);
    }
}
