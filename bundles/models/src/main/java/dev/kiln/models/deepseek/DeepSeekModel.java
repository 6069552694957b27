package dev.kiln.models.deepseek;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.ExpertRouting;
import dev.kiln.api.backend.RoutedExperts;
import dev.kiln.api.backend.RotaryEmbedding;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
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
import java.util.Optional;

/**
 * DeepSeek-V2 and V3 (and R1, which is V3), written once against the {@link ComputeBackend}, an
 * {@link AttentionKernel} and weights of any format (bf16 as stored, FP8 blocks, or whatever the configured
 * quantizer makes of them).
 *
 * <pre>
 * x = embed(tokens)
 * for each layer l:
 *     x += MLA(rmsNorm(x))                   {@link LatentAttention}: the cache holds only [latent | rope key]
 *     x += FFN(rmsNorm(x))                   dense MLP below first_k_dense_replace, else {@link MixtureOfExperts}
 * logits = lm_head(rmsNorm(x[logitRows]))
 * </pre>
 *
 * Layer {@code num_hidden_layers} of a V3 checkpoint is the multi-token prediction module, served through
 * {@link MtpHead}.
 *
 * <p>Attention takes the absorbed MLA path, except for batches in which every sequence starts from an empty
 * context: those take the expanded path by default (see {@link AttentionPath}).
 */
final class DeepSeekModel implements CausalLanguageModel {

    /** Which MLA computation a step uses; both are exact rewritings of the same attention. */
    enum AttentionPath {
        /** Always the absorbed path: attention over the cached latents, one shared entry per token. */
        ABSORBED,
        /** The expanded path for batches that start from empty contexts (prefill), the absorbed one otherwise. */
        EXPANDED_PREFILL
    }

    private final ModelConfig modelConfig;
    private final DeepSeekConfig config;
    private final Checkpoint checkpoint;
    private final ComputeBackend backend;
    private final AttentionKernel attention;
    private final WeightLoader weights;
    private final DerivedWeights derived;
    private final ExpandedAttention expanded;
    private final RotaryEmbedding rotary;
    private final KvCacheSpec kvCacheSpec;
    private final int maxBatchTokens;
    private final Weight embedding;
    private final DecoderLayer[] layers;
    private final LanguageModelHead head;
    private final Activations activations;
    private final MultiTokenPredictor mtp;
    private AttentionPath path = AttentionPath.EXPANDED_PREFILL;
    /** The routed experts' bytes a token does not read on average, summed over the MoE layers as they are loaded. */
    private long unchosenExpertBytes;
    /** Bytes of the MTP module (its weights and derived matrices): plain decoding never reads them. */
    private long mtpBytes;

    private DeepSeekModel(Checkpoint checkpoint, DeepSeekConfig config, ModelBuildOptions options, WeightLoader weights,
                          DerivedWeights derived, ExpandedAttention expanded) {
        this.modelConfig = checkpoint.config();
        this.config = config;
        this.checkpoint = checkpoint;
        this.backend = options.backend();
        this.attention = options.attention();
        this.weights = weights;
        this.derived = derived;
        this.expanded = expanded;
        this.maxBatchTokens = options.maxBatchTokens();
        this.kvCacheSpec = latentCacheSpec(config, config.layers(), options.kvCacheDtypeOr(DType.F32));
        if (!attention.supports(kvCacheSpec, backend)) {
            throw new IllegalArgumentException("attention kernel " + attention.getClass().getName()
                    + " does not support the MLA cache " + kvCacheSpec + " on backend '" + backend.name() + "'");
        }
        this.rotary = config.rope().on(backend, config.ropeLayout());
        int hidden = config.hiddenSize();
        this.embedding = weights.dense("model.embed_tokens.weight", config.vocabSize(), hidden);
        this.layers = new DecoderLayer[config.layers()];
        boolean anyDense = false;
        for (int i = 0; i < layers.length; i++) {
            layers[i] = loadLayer(i);
            anyDense |= !config.ffn().isMoe(i);
        }
        boolean mtpStored = config.mtpModules() > 0
                && checkpoint.find("model.layers." + config.layers() + ".eh_proj.weight").isPresent();
        anyDense |= mtpStored && !config.ffn().isMoe(config.layers());
        Tensor norm = weights.vector("model.norm.weight", hidden);
        Weight projection = outputProjection("lm_head", true);
        LanguageModelHead lmHead = null;
        Activations buffers = null;
        try {
            lmHead = new LanguageModelHead(backend, norm, config.rmsNormEps(), projection, hidden, maxBatchTokens);
            buffers = new Activations(backend, config, maxBatchTokens, anyDense, expanded.available());
            long before = weightBytes();
            long unchosenBefore = unchosenExpertBytes;
            this.mtp = mtpStored ? loadMtp(config.layers(), buffers) : null;
            mtpBytes = weightBytes() - before;
            unchosenExpertBytes = unchosenBefore; // the module's experts are left out whole, with the rest of it
        } catch (RuntimeException e) {
            if (buffers != null) buffers.close();
            if (lmHead != null) lmHead.close();
            throw e;
        }
        this.head = lmHead;
        this.activations = buffers;
    }

    /**
     * Builds the model; it owns the checkpoint from then on (and closes it here if the build fails).
     *
     * @throws InvalidCheckpointException naming the tensor or field at fault
     */
    static DeepSeekModel build(Checkpoint checkpoint, ModelBuildOptions options, DeepSeekConfig config) {
        WeightLoader weights = null;
        DerivedWeights derived = null;
        ExpandedAttention expanded = null;
        try {
            if (options.quantizer() == null && checkpoint.config().has("quantization_config")) {
                throw checkpoint.config().invalid("quantization_config", "the checkpoint is pre-quantized ("
                        + checkpoint.config().getObject("quantization_config").orElseThrow().get("quant_method")
                        + "): build it with the matching quantizer");
            }
            weights = new WeightLoader(checkpoint, options.backend(), options.quantizer());
            derived = new DerivedWeights(options.backend(), checkpoint.location());
            expanded = new ExpandedAttention(options.attention(), options.backend(), config,
                    options.kvCacheDtypeOr(DType.F32));
            return new DeepSeekModel(checkpoint, config, options, weights, derived, expanded);
        } catch (RuntimeException e) {
            closeAfterFailure(expanded, e);
            closeAfterFailure(derived, e);
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

    /**
     * The cache geometry of MLA: one entry {@code [latent | rope key]} per token and layer, values inside it, stored
     * as {@code dtype}.
     */
    static KvCacheSpec latentCacheSpec(DeepSeekConfig config, int layers, DType dtype) {
        return new KvCacheSpec(layers, 1, config.latentEntryDim(), config.kvLoraRank(), true, dtype);
    }

    /** Decoder layer {@code index} (of the main model, or an MTP module's block). */
    private DecoderLayer loadLayer(int index) {
        String p = "model.layers." + index + ".";
        int hidden = config.hiddenSize();
        Tensor inputNorm = weights.vector(p + "input_layernorm.weight", hidden);
        var mla = new LatentAttention(p + "self_attn", config, weights, derived, backend, attention, expanded, rotary);
        Tensor postNorm = weights.vector(p + "post_attention_layernorm.weight", hidden);
        FeedForward ffn = config.ffn().isMoe(index)
                ? loadExperts(p + "mlp.")
                : new FeedForward.Dense(backend, loadMlp(p + "mlp.", config.intermediateSize()));
        return new DecoderLayer(backend, config.rmsNormEps(), inputNorm, mla, postNorm, ffn);
    }

    private DenseMlp loadMlp(String p, int width) {
        int hidden = config.hiddenSize();
        return new DenseMlp(weights.linear(p + "gate_proj", width, hidden, false),
                weights.linear(p + "up_proj", width, hidden, false),
                weights.linear(p + "down_proj", hidden, width, false));
    }

    private MixtureOfExperts loadExperts(String p) {
        DeepSeekConfig.Experts e = config.ffn();
        // The router stays in the checkpoint's precision: its logits decide which experts run.
        Weight router = weights.dense(p + "gate.weight", e.routed(), config.hiddenSize());
        float[] bias = null;
        if (e.selection() == ExpertRouting.Selection.NOAUX_TC) {
            bias = backend.read(weights.vector(p + "gate.e_score_correction_bias", e.routed()));
        }
        var routing = new ExpertRouting(e.routed(), e.perToken(), e.scoring(), e.selection(), e.groups(),
                e.groupsPerToken(), e.normalize(), e.scalingFactor(), bias);
        DenseMlp[] experts = new DenseMlp[e.routed()];
        for (int i = 0; i < experts.length; i++) experts[i] = loadMlp(p + "experts." + i + ".", e.width());
        DenseMlp shared = e.shared() > 0 ? loadMlp(p + "shared_experts.", e.shared() * e.width()) : null;
        Weight[] gate = new Weight[experts.length], up = new Weight[experts.length], down = new Weight[experts.length];
        boolean biased = false;
        long routedBytes = 0;
        for (int i = 0; i < experts.length; i++) {
            routedBytes += experts[i].gate().weight().bytes() + experts[i].up().weight().bytes()
                    + experts[i].down().weight().bytes();
            biased |= experts[i].gate().bias() != null || experts[i].up().bias() != null || experts[i].down().bias() != null;
            gate[i] = experts[i].gate().weight();
            up[i] = experts[i].up().weight();
            down[i] = experts[i].down().weight();
        }
        // A backend's own path, where it has one: routing without reading logits back, so steps replay as graphs.
        unchosenExpertBytes += Math.round(routedBytes * (1 - (double) e.perToken() / e.routed()));
        RoutedExperts onDevice = biased ? null : backend.routedExperts(routing, gate, up, down, maxBatchTokens);
        if (onDevice != null) weights.own(onDevice);
        return new MixtureOfExperts(backend, router, routing, experts, shared, onDevice);
    }

    /**
     * A vocabulary projection: through the quantizer when one converts this checkpoint on load; a pre-quantized
     * checkpoint stores its heads unquantized. {@code lm_head} falls back to the embedding table when tied or absent.
     */
    private Weight outputProjection(String prefix, boolean mayTie) {
        boolean tied = mayTie && (modelConfig.tieWordEmbeddings() || checkpoint.find(prefix + ".weight").isEmpty());
        String source = tied ? "model.embed_tokens" : prefix;
        if (weights.quantizes() && !weights.preQuantized()) {
            return weights.projection(source, config.vocabSize(), config.hiddenSize());
        }
        return tied ? embedding : weights.dense(prefix + ".weight", config.vocabSize(), config.hiddenSize());
    }

    private MultiTokenPredictor loadMtp(int index, Activations shared) {
        String p = "model.layers." + index + ".";
        int hidden = config.hiddenSize();
        Tensor embedNorm = weights.vector(p + "enorm.weight", hidden);
        Tensor hiddenNorm = weights.vector(p + "hnorm.weight", hidden);
        Linear combine = weights.linear(p + "eh_proj", hidden, 2 * hidden, false);
        DecoderLayer block = loadLayer(index);
        Tensor headNorm = weights.vector(p + "shared_head.norm.weight", hidden);
        Weight headProjection = outputProjection(p + "shared_head.head", false);
        return new MultiTokenPredictor(config, backend, attention, embedding, embedNorm, hiddenNorm, combine, block,
                headNorm, headProjection, shared, this::expands, kvCacheSpec.dtype());
    }

    /** Selects the MLA computation of later steps (for comparing the two; both are exact). */
    void useAttentionPath(AttentionPath path) {
        this.path = path;
    }

    /** Whether a step over {@code batch} takes the expanded MLA path. */
    private boolean expands(AttentionMetadata batch) {
        return path == AttentionPath.EXPANDED_PREFILL && expanded.available()
                && ExpandedAttention.startsFromEmptyContexts(batch);
    }

    /** The first MTP module, when the checkpoint has one. */
    Optional<MtpHead> mtpHead() {
        return Optional.ofNullable(mtp);
    }

    @Override
    public ForwardResult forward(ForwardBatch batch, KvCache cache) {
        BatchValidation.check(batch, cache, maxBatchTokens, config.vocabSize());
        if (!cache.spec().equals(kvCacheSpec)) {
            throw new IllegalArgumentException("cache " + cache.spec() + " is not this model's " + kvCacheSpec);
        }
        // Trailing padding tokens (slot -1, which an engine adds to decode steps) need no routed expert: their output is
        // never read, and on the host each would bring experts of its own into the step. (A GPU's own routed experts
        // may route them anyway, so that its recorded steps depend only on the padded count.)
        int[] slots = batch.attention().slotMapping();
        int routed = batch.numTokens();
        while (routed > 1 && slots[routed - 1] < 0) routed--;
        Activations.Step step = activations.forTokens(batch.numTokens(), routed);
        backend.embed(embedding, batch.tokens(), batch.pendingTokens(), step.residual());
        boolean expand = expands(batch.attention());
        for (int i = 0; i < layers.length; i++) {
            layers[i].forward(step, batch.positions(), cache, i, batch.attention(), expand);
        }
        return head.apply(step.residual(), batch.logitRows(), batch.returnHiddenStates());
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

    /** Checkpoint weights in their storage formats plus the absorption matrices derived from them. */
    @Override
    public long weightBytes() {
        return weights.bytes() + derived.bytes();
    }

    /**
     * {@link #weightBytes()} less the routed experts' bytes times {@code 1 - num_experts_per_tok / n_routed_experts}
     * and less the MTP module, which only speculative decoding reads.
     */
    @Override
    public long weightBytesPerToken() {
        return weightBytes() - unchosenExpertBytes - mtpBytes;
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
            if (mtp != null) mtp.close();
            activations.close();
            head.close();
            expanded.close();
            weights.close();
            derived.close();
        } finally {
            checkpoint.close();
        }
    }

    @Override
    public String toString() {
        return config.architecture() + " model from " + checkpoint.location() + " (" + config.layers() + " layers, hidden "
                + config.hiddenSize() + ", " + config.heads() + " MLA heads, latent " + config.kvLoraRank() + ", "
                + config.ffn().routed() + " routed experts" + (mtp != null ? ", MTP module" : "") + ")";
    }
}
