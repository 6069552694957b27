package dev.kiln.models.deepseek;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.api.model.ForwardResult;
import dev.kiln.api.tensor.Tensor;
import java.util.Optional;

/**
 * A multi-token prediction (MTP) module of DeepSeek-V3/R1 (checkpoint layer {@code num_hidden_layers}): from the
 * target model's final-norm hidden state at position {@code j} and the token at {@code j + 1}, it predicts the
 * token at {@code j + 2}, as vLLM's {@code deepseek_mtp} does:
 *
 * <pre>
 * e = rmsNorm_enorm(embed(token j+1))          (zero at j = 0)
 * h = rmsNorm_hnorm(hidden j)
 * x = eh_proj([e | h])
 * x = decoder block(x)                         (MLA over the module's own cache + DeepSeekMoE)
 * logits = shared_head.head(rmsNorm_shared_head.norm(x))
 * </pre>
 *
 * The module shares the target's embedding table and backend and keeps its own KV cache (one layer of latent
 * entries), indexed by the same positions {@code j} as the target. Not thread-safe, like the model it belongs to;
 * it is released with the model.
 */
public interface MtpHead {
    /**
     * The model's first MTP module, or empty when the model has none (not a DeepSeek-V3 model, or a checkpoint
     * without the module's weights).
     */
    static Optional<MtpHead> of(CausalLanguageModel model) {
        return model instanceof DeepSeekModel deepSeek ? deepSeek.mtpHead() : Optional.empty();
    }

    /** Width of a logits row. */
    int vocabSize();

    /** Width of a hidden state, in and out. */
    int hiddenSize();

    /** The most tokens one forward accepts. */
    int maxBatchTokens();

    /** What one token stores in the module's cache (one layer). */
    KvCacheSpec kvCacheSpec();

    /** Allocates a cache for the module with the model's attention kernel. */
    KvCache allocateKvCache(int numBlocks, int blockSize);

    /**
     * Predicts, for every token of the batch, the token two positions after the target state it is paired with.
     *
     * @param previousHidden {@code [≥ T, hidden]} F32 on the model's backend: row t is the target model's final-norm
     *                       hidden state at position {@code batch.positions()[t]} (as {@link ForwardResult#hiddenStates}
     *                       returns it), or this module's own output state when chaining predictions
     * @param batch          {@code tokens[t]}: the token at position {@code positions[t] + 1}; positions, cache
     *                       placement and logit rows as for the target model
     * @param cache          the module's cache
     * @return logits {@code [logitRows, vocab]}; with {@code returnHiddenStates}, the module's output states of those
     *         rows before {@code shared_head.norm}, which a further chained prediction takes as {@code previousHidden}
     * @throws IllegalArgumentException when the batch does not fit the module, the cache or the hidden states
     */
    ForwardResult forward(Tensor previousHidden, ForwardBatch batch, KvCache cache);
}
