package dev.kiln.models.deepseek;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.api.model.ForwardResult;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.models.BatchValidation;
import dev.kiln.models.LanguageModelHead;
import dev.kiln.models.Linear;
import java.util.Arrays;
import java.util.function.Predicate;

/**
 * DeepSeek-V3's MTP module (see {@link MtpHead}): the target's embedding table, its own norms, {@code eh_proj},
 * one decoder block caching in layer 0 of the module's own cache, and {@code shared_head}.
 */
final class MultiTokenPredictor implements MtpHead, AutoCloseable {
    private final DeepSeekConfig config;
    private final ComputeBackend backend;
    private final AttentionKernel attention;
    private final Weight embedding;
    private final Tensor embedNorm;
    private final Tensor hiddenNorm;
    private final Linear combine;
    private final DecoderLayer block;
    private final LanguageModelHead head;
    private final KvCacheSpec kvCacheSpec;
    private final int maxBatchTokens;
    private final Predicate<AttentionMetadata> expands;
    private final Activations activations;
    private final Tensor embedded;
    private final Tensor previousNormed;
    private final Tensor concatenated;
    private final Tensor selected;

    /**
     * @param activations the model's workspace: the module runs between the model's forwards, never during one,
     *                    so it shares the model's activations (and takes its own few extra tensors from them)
     * @param expands     decides per step whether the block takes the expanded MLA path (shared with the model)
     * @param cacheDtype  the element type of the module's KV cache (the model's)
     */
    MultiTokenPredictor(DeepSeekConfig config, ComputeBackend backend, AttentionKernel attention, Weight embedding,
                        Tensor embedNorm, Tensor hiddenNorm, Linear combine, DecoderLayer block, Tensor headNorm,
                        Weight headProjection, Activations activations, Predicate<AttentionMetadata> expands,
                        DType cacheDtype) {
        this.config = config;
        this.backend = backend;
        this.attention = attention;
        this.embedding = embedding;
        this.embedNorm = embedNorm;
        this.hiddenNorm = hiddenNorm;
        this.combine = combine;
        this.block = block;
        // The module's own cache stores what the model's does.
        this.kvCacheSpec = DeepSeekModel.latentCacheSpec(config, 1, cacheDtype);
        this.maxBatchTokens = activations.capacity();
        this.expands = expands;
        this.activations = activations;
        int hidden = config.hiddenSize();
        this.embedded = activations.take(hidden);
        this.previousNormed = activations.take(hidden);
        this.concatenated = activations.take(2 * hidden);
        this.selected = activations.take(hidden);
        this.head = new LanguageModelHead(backend, headNorm, config.rmsNormEps(), headProjection, hidden, maxBatchTokens);
    }

    @Override
    public ForwardResult forward(Tensor previousHidden, ForwardBatch batch, KvCache cache) {
        BatchValidation.check(batch, cache, maxBatchTokens, config.vocabSize());
        if (!cache.spec().equals(kvCacheSpec)) {
            throw new IllegalArgumentException("cache " + cache.spec() + " is not the MTP module's " + kvCacheSpec);
        }
        int tokens = batch.numTokens();
        int hidden = config.hiddenSize();
        if (previousHidden.rowCount() < tokens || previousHidden.rowLength() != hidden) {
            throw new IllegalArgumentException("previous hidden states " + Arrays.toString(previousHidden.shape())
                    + " do not cover " + tokens + " tokens of " + hidden);
        }
        Activations.Step step = activations.forTokens(tokens);
        Tensor e = embedded.rows(tokens);
        Tensor h = previousNormed.rows(tokens);
        Tensor both = concatenated.rows(tokens);
        backend.embed(embedding, batch.tokens(), batch.pendingTokens(), e);
        zeroPositionZero(e, batch.positions(), h);
        backend.rmsNorm(e, embedNorm, config.rmsNormEps(), e);
        backend.rmsNorm(previousHidden.rows(tokens), hiddenNorm, config.rmsNormEps(), h);
        backend.copyColumns(e, 0, both, 0, hidden);
        backend.copyColumns(h, 0, both, hidden, hidden);
        combine.apply(backend, both, step.residual());
        block.forward(step, batch.positions(), cache, 0, batch.attention(), expands.test(batch.attention()));
        ForwardResult result = head.apply(step.residual(), batch.logitRows(), false);
        if (!batch.returnHiddenStates()) return result;
        Tensor states = selected.rows(batch.logitRows().length);
        if (batch.logitRows().length > 0) backend.gatherRows(step.residual(), batch.logitRows(), states);
        return new ForwardResult(result.logits(), states);
    }

    /**
     * The module sees no embedding at position 0 (vLLM's convention, which the reference follows): those rows
     * become {@code e - e = 0}, through the backend's row operations.
     */
    private void zeroPositionZero(Tensor e, int[] positions, Tensor scratch) {
        int count = 0;
        for (int p : positions) {
            if (p == 0) count++;
        }
        if (count == 0) return;
        int[] rows = new int[count];
        for (int t = 0, i = 0; t < positions.length; t++) {
            if (positions[t] == 0) rows[i++] = t;
        }
        float[] minusOne = new float[count];
        Arrays.fill(minusOne, -1f);
        Tensor copies = scratch.rows(count);
        backend.gatherRows(e, rows, copies);
        backend.scatterAddRows(copies, rows, minusOne, e);
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
    public int maxBatchTokens() {
        return maxBatchTokens;
    }

    @Override
    public KvCacheSpec kvCacheSpec() {
        return kvCacheSpec;
    }

    @Override
    public KvCache allocateKvCache(int numBlocks, int blockSize) {
        return attention.allocate(kvCacheSpec, numBlocks, blockSize, backend);
    }

    /** Releases the module's head workspace (its weights and activations belong to the model). */
    @Override
    public void close() {
        head.close();
    }
}
