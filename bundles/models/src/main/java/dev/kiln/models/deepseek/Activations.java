package dev.kiln.models.deepseek;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * The activations of one decoder step, allocated once for the most tokens a step takes and viewed with
 * {@link #forTokens} for each step's actual count. One instance serves every layer of a model (layers run one
 * after the other); the MTP module has its own.
 */
final class Activations implements AutoCloseable {
    private final List<Tensor> owned = new ArrayList<>();
    private final ComputeBackend backend;
    private final int capacity;

    final Tensor residual, normed, queryLow, query, latentEntry, latent;
    final Tensor headNope, headLatent, absorbedQuery, latentOut, headValue;
    final Tensor expandedKv, expandedKey, expandedValue;
    final Tensor attention, projected;
    final Tensor denseGate, denseUp, sharedGate, sharedUp;
    final Tensor routerLogits, expertIn, expertGate, expertUp, expertOut;

    /**
     * The tensors viewed for {@code tokens} rows; fields are null where the model has no such activation.
     * {@code routedTokens}: the leading rows that go to routed experts (the rest are padding, see
     * {@link DeepSeekModel#forward}).
     */
    record Step(int tokens, int routedTokens, Tensor residual, Tensor normed, Tensor queryLow, Tensor query, Tensor latentEntry,
                Tensor latent, Tensor headNope, Tensor headLatent, Tensor absorbedQuery, Tensor latentOut,
                Tensor headValue, Tensor expandedKv, Tensor expandedKey, Tensor expandedValue, Tensor attention,
                Tensor projected, Tensor denseGate, Tensor denseUp, Tensor sharedGate, Tensor sharedUp,
                Tensor routerLogits, Activations buffers) {}

    /**
     * @param capacity the most tokens of one step
     * @param dense    whether any layer has a dense MLP (then its intermediate buffers are needed)
     * @param expanded whether the expanded (naive) attention path may run
     */
    Activations(ComputeBackend backend, DeepSeekConfig c, int capacity, boolean dense, boolean expanded) {
        this.backend = backend;
        this.capacity = capacity;
        try {
            int heads = c.heads();
            residual = take(c.hiddenSize());
            normed = take(c.hiddenSize());
            queryLow = c.qLoraRank() > 0 ? take(c.qLoraRank()) : null;
            query = take(heads * c.queryHeadDim());
            latentEntry = take(c.latentEntryDim());
            latent = take(c.kvLoraRank());
            headNope = take(c.nopeHeadDim());
            headLatent = take(c.kvLoraRank());
            absorbedQuery = take(heads * c.latentEntryDim());
            latentOut = take(heads * c.kvLoraRank());
            headValue = take(c.valueHeadDim());
            expandedKv = expanded ? take(heads * (c.nopeHeadDim() + c.valueHeadDim())) : null;
            expandedKey = expanded ? take(heads * c.queryHeadDim()) : null;
            expandedValue = expanded ? take(heads * c.valueHeadDim()) : null;
            attention = take(heads * c.valueHeadDim());
            projected = take(c.hiddenSize());
            denseGate = dense ? take(c.intermediateSize()) : null;
            denseUp = dense ? take(c.intermediateSize()) : null;
            DeepSeekConfig.Experts e = c.ffn();
            boolean moe = e.routed() > 0;
            sharedGate = moe && e.shared() > 0 ? take(e.shared() * e.width()) : null;
            sharedUp = moe && e.shared() > 0 ? take(e.shared() * e.width()) : null;
            routerLogits = moe ? take(e.routed()) : null;
            expertIn = moe ? take(c.hiddenSize()) : null;
            expertGate = moe ? take(e.width()) : null;
            expertUp = moe ? take(e.width()) : null;
            expertOut = moe ? take(c.hiddenSize()) : null;
        } catch (RuntimeException failure) {
            close(); // device memory must not leak when a later allocation fails
            throw failure;
        }
    }

    /** A tensor {@code [capacity, width]} owned by this workspace. */
    Tensor take(int width) {
        Tensor t = backend.allocate(DType.F32, capacity, width);
        owned.add(t);
        return t;
    }

    /** The most tokens of one step. */
    int capacity() {
        return capacity;
    }

    /** Views of every tensor for a step of {@code tokens} tokens, all of them routed. */
    Step forTokens(int tokens) {
        return forTokens(tokens, tokens);
    }

    /** Views of every tensor for a step of {@code tokens} tokens, the first {@code routedTokens} of them routed. */
    Step forTokens(int tokens, int routedTokens) {
        return new Step(tokens, routedTokens, rows(residual, tokens), rows(normed, tokens), rows(queryLow, tokens),
                rows(query, tokens), rows(latentEntry, tokens), rows(latent, tokens), rows(headNope, tokens),
                rows(headLatent, tokens), rows(absorbedQuery, tokens), rows(latentOut, tokens),
                rows(headValue, tokens), rows(expandedKv, tokens), rows(expandedKey, tokens),
                rows(expandedValue, tokens), rows(attention, tokens), rows(projected, tokens),
                rows(denseGate, tokens), rows(denseUp, tokens), rows(sharedGate, tokens), rows(sharedUp, tokens),
                rows(routerLogits, tokens), this);
    }

    private static Tensor rows(Tensor t, int rows) {
        return t == null ? null : t.rows(rows);
    }

    @Override
    public void close() {
        for (Tensor t : owned) t.close();
        owned.clear();
    }
}
