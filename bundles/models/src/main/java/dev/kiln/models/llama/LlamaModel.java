package dev.kiln.models.llama;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.RotaryEmbedding;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.api.model.ForwardResult;
import dev.kiln.api.model.ModelBuildOptions;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.models.BatchValidation;
import dev.kiln.models.LanguageModelHead;
import dev.kiln.models.Linear;
import dev.kiln.models.WeightLoader;

/**
 * The Llama family of decoders (Llama 2/3, Qwen2, and the DeepSeek-R1 distillations into both), written once
 * against the {@link ComputeBackend}, an {@link AttentionKernel} and weights of any format.
 *
 * <pre>
 * x = embed(tokens)
 * for each layer:
 *     h = rmsNorm(x)
 *     q, k, v = h·Wqᵀ (+bq), h·Wkᵀ (+bk), h·Wvᵀ (+bv)
 *     rotate q and k by their positions (rotate-half layout)
 *     a = attention(q, k, v) over the paged cache (grouped-query: kvHeads ≤ heads)
 *     x += a·Woᵀ
 *     h = rmsNorm(x)
 *     x += (silu(h·Wgateᵀ) * h·Wupᵀ)·Wdownᵀ
 * logits = rmsNorm(x[logitRows])·Wlm_headᵀ     (Wlm_head = embedding table when tied)
 * </pre>
 *
 * <p>A forward step takes any mix of sequences and query tokens ({@link ForwardBatch}); the activations live in a
 * workspace allocated once for {@link #maxBatchTokens()} rows and viewed with {@link Tensor#rows} per step.
 */
public final class LlamaModel implements CausalLanguageModel {

    /** One decoder layer's weights, named after the checkpoint's modules. */
    private record Layer(Tensor inputNorm, Linear q, Linear k, Linear v, Linear o,
                         Tensor postAttentionNorm, Linear gate, Linear up, Linear down) {}

    /** Activations of one step, each {@code [maxBatchTokens, width]}. */
    private record Workspace(Tensor residual, Tensor normed, Tensor query, Tensor key, Tensor value,
                             Tensor attention, Tensor gate, Tensor up) {
        static Workspace allocate(ComputeBackend backend, LlamaConfig c, int tokens) {
            int[] widths = {c.hiddenSize(), c.hiddenSize(), c.queryDim(), c.kvDim(), c.kvDim(), c.queryDim(),
                    c.intermediateSize(), c.intermediateSize()};
            Tensor[] t = new Tensor[widths.length];
            try {
                for (int i = 0; i < t.length; i++) t[i] = backend.allocate(DType.F32, tokens, widths[i]);
            } catch (RuntimeException e) {
                closeAll(t); // device memory must not leak when a later allocation fails
                throw e;
            }
            return new Workspace(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]);
        }

        void close() {
            closeAll(new Tensor[] {residual, normed, query, key, value, attention, gate, up});
        }

        private static void closeAll(Tensor[] tensors) {
            for (Tensor t : tensors) {
                if (t != null) t.close();
            }
        }
    }

    private final ModelConfig modelConfig;
    private final LlamaConfig config;
    private final Checkpoint checkpoint;
    private final ComputeBackend backend;
    private final AttentionKernel attention;
    private final WeightLoader weights;
    private final Weight embedding;
    private final Layer[] layers;
    private final RotaryEmbedding rotary;
    private final LanguageModelHead head;
    private final KvCacheSpec kvCacheSpec;
    private final int maxBatchTokens;
    private final Workspace workspace;

    private LlamaModel(Checkpoint checkpoint, LlamaConfig config, ModelBuildOptions options, WeightLoader weights) {
        this.modelConfig = checkpoint.config();
        this.config = config;
        this.checkpoint = checkpoint;
        this.backend = options.backend();
        this.attention = options.attention();
        this.weights = weights;
        this.maxBatchTokens = options.maxBatchTokens();
        // F32 keys and values by default: the cache keeps exactly what the reference attends over. A BF16 cache
        // (asked for in the options) rounds them when stored, for half the memory per token.
        this.kvCacheSpec = new KvCacheSpec(config.layers(), config.kvHeads(), config.headDim(), config.headDim(),
                false, options.kvCacheDtypeOr(DType.F32));
        if (!attention.supports(kvCacheSpec, backend)) {
            throw new IllegalArgumentException("attention kernel " + attention.getClass().getName()
                    + " does not support " + kvCacheSpec + " on backend '" + backend.name() + "'");
        }

        int hidden = config.hiddenSize();
        this.embedding = weights.dense("model.embed_tokens.weight", config.vocabSize(), hidden);
        this.layers = new Layer[config.layers()];
        for (int i = 0; i < layers.length; i++) layers[i] = loadLayer(i);
        this.rotary = config.rope().on(backend, RotaryEmbedding.Layout.HALVES);
        this.head = new LanguageModelHead(backend, weights.vector("model.norm.weight", hidden), config.rmsNormEps(),
                loadOutputProjection(), hidden, maxBatchTokens);
        try {
            this.workspace = Workspace.allocate(backend, config, maxBatchTokens);
        } catch (RuntimeException e) {
            head.close();
            throw e;
        }
    }

    /**
     * Builds the model; it owns the checkpoint from then on (and closes it here if the build fails).
     *
     * @throws dev.kiln.api.checkpoint.InvalidCheckpointException naming the tensor or field at fault
     */
    static LlamaModel build(Checkpoint checkpoint, ModelBuildOptions options, LlamaConfig config) {
        WeightLoader weights = null;
        try {
            weights = new WeightLoader(checkpoint, options.backend(), options.quantizer());
            return new LlamaModel(checkpoint, config, options, weights);
        } catch (RuntimeException e) {
            closeAfterFailure(weights, e);
            closeAfterFailure(checkpoint, e);
            throw e;
        }
    }

    private static void closeAfterFailure(AutoCloseable resource, RuntimeException failure) {
        if (resource == null) return;
        try {
            resource.close();
        } catch (Exception suppressed) {
            failure.addSuppressed(suppressed);
        }
    }

    private Layer loadLayer(int i) {
        String p = "model.layers." + i + ".";
        LlamaConfig c = config;
        int hidden = c.hiddenSize();
        return new Layer(
                weights.vector(p + "input_layernorm.weight", hidden),
                weights.linear(p + "self_attn.q_proj", c.queryDim(), hidden, c.qkvBias()),
                weights.linear(p + "self_attn.k_proj", c.kvDim(), hidden, c.qkvBias()),
                weights.linear(p + "self_attn.v_proj", c.kvDim(), hidden, c.qkvBias()),
                weights.linear(p + "self_attn.o_proj", hidden, c.queryDim(), c.outputBias()),
                weights.vector(p + "post_attention_layernorm.weight", hidden),
                weights.linear(p + "mlp.gate_proj", c.intermediateSize(), hidden, c.mlpBias()),
                weights.linear(p + "mlp.up_proj", c.intermediateSize(), hidden, c.mlpBias()),
                weights.linear(p + "mlp.down_proj", hidden, c.intermediateSize(), c.mlpBias()));
    }

    /**
     * The output projection: {@code lm_head}, or the embedding table when tied or absent. It goes through the
     * quantizer when one converts this checkpoint on load; a pre-quantized checkpoint stores its head unquantized.
     */
    private Weight loadOutputProjection() {
        boolean tied = config.tiedEmbeddings() || checkpoint.find("lm_head.weight").isEmpty();
        String prefix = tied ? "model.embed_tokens" : "lm_head";
        if (weights.quantizes() && !weights.preQuantized()) {
            return weights.projection(prefix, config.vocabSize(), config.hiddenSize());
        }
        return tied ? embedding : weights.dense("lm_head.weight", config.vocabSize(), config.hiddenSize());
    }

    @Override
    public ForwardResult forward(ForwardBatch batch, KvCache cache) {
        int tokens = batch.numTokens();
        BatchValidation.check(batch, cache, maxBatchTokens, config.vocabSize());
        Workspace w = workspace;
        Tensor x = w.residual().rows(tokens);
        Tensor h = w.normed().rows(tokens);
        Tensor q = w.query().rows(tokens);
        Tensor k = w.key().rows(tokens);
        Tensor v = w.value().rows(tokens);
        Tensor a = w.attention().rows(tokens);
        Tensor gate = w.gate().rows(tokens);
        Tensor up = w.up().rows(tokens);
        int[] positions = batch.positions();
        float eps = config.rmsNormEps();

        backend.embed(embedding, batch.tokens(), batch.pendingTokens(), x);
        for (int i = 0; i < layers.length; i++) {
            Layer layer = layers[i];

            backend.rmsNorm(x, layer.inputNorm(), eps, h);
            layer.q().apply(backend, h, q);
            layer.k().apply(backend, h, k);
            layer.v().apply(backend, h, v);
            rotary.apply(q, positions, config.heads(), config.headDim(), 0);
            rotary.apply(k, positions, config.kvHeads(), config.headDim(), 0);
            attention.forward(i, q, k, v, a, config.attentionScale(), cache, batch.attention());
            layer.o().apply(backend, a, h);
            backend.add(x, h);

            backend.rmsNorm(x, layer.postAttentionNorm(), eps, h);
            layer.gate().apply(backend, h, gate);
            layer.up().apply(backend, h, up);
            backend.siluAndMul(gate, up, gate);
            layer.down().apply(backend, gate, h);
            backend.add(x, h);
        }
        return head.apply(x, batch.logitRows(), batch.returnHiddenStates());
    }

    @Override
    public KvCache allocateKvCache(int numBlocks, int blockSize) {
        return attention.allocate(kvCacheSpec, numBlocks, blockSize, backend);
    }

    @Override
    public ModelConfig config() {
        return modelConfig;
    }

    @Override
    public String architecture() {
        return config.architecture();
    }

    @Override
    public ComputeBackend backend() {
        return backend;
    }

    @Override
    public int vocabSize() {
        return config.vocabSize();
    }

    @Override
    public int hiddenSize() {
        return config.hiddenSize();
    }

    @Override
    public long weightBytes() {
        return weights.bytes();
    }

    @Override
    public KvCacheSpec kvCacheSpec() {
        return kvCacheSpec;
    }

    /** The ids are read only by the embedding, which takes pending tokens where the backend holds them. */
    @Override
    public boolean acceptsPendingTokens() {
        return true;
    }

    @Override
    public int maxBatchTokens() {
        return maxBatchTokens;
    }

    @Override
    public void close() {
        try {
            workspace.close();
            head.close();
            weights.close();
        } finally {
            checkpoint.close();
        }
    }

    @Override
    public String toString() {
        return config.architecture() + " model from " + checkpoint.location() + " (" + config.layers() + " layers, hidden "
                + config.hiddenSize() + ", " + config.heads() + "/" + config.kvHeads() + " heads of " + config.headDim() + ")";
    }
}
