package dev.kiln.models;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.model.ForwardResult;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;

/**
 * The end of a decoder: picks the rows whose logits a step wants, applies the final RMSNorm to them and projects
 * them onto the vocabulary. Only the requested rows are normalised and projected, so a prefill chunk of 600 tokens
 * that wants the last token's logits pays for one vocabulary projection, not 600.
 *
 * <p>The selected hidden states live in a workspace allocated once for the model's batch capacity. The logits
 * buffer starts small and grows (reallocated, never shrunk) the first time a step asks for more rows than any
 * before: a vocabulary-wide buffer for every token of a large batch would cost gigabytes that decode never uses.
 */
public final class LanguageModelHead implements AutoCloseable {
    private static final int INITIAL_LOGIT_ROWS = 16;

    private final ComputeBackend backend;
    private final Tensor norm;
    private final float eps;
    private final Weight projection;
    private final int hiddenSize;
    private final Tensor selected;
    private Tensor logits;

    /**
     * @param norm       the final norm's scale {@code [1, hidden]}
     * @param projection the output projection {@code [vocab, hidden]} (the embedding table when tied)
     * @param maxRows    the most rows one step can select (the model's batch capacity)
     */
    public LanguageModelHead(ComputeBackend backend, Tensor norm, float eps, Weight projection, int hiddenSize,
                             int maxRows) {
        this.backend = backend;
        this.norm = norm;
        this.eps = eps;
        this.projection = projection;
        this.hiddenSize = hiddenSize;
        this.selected = backend.allocate(DType.F32, maxRows, hiddenSize);
        try {
            this.logits = backend.allocate(DType.F32, Math.min(maxRows, INITIAL_LOGIT_ROWS), projection.rows());
        } catch (RuntimeException e) {
            selected.close();
            throw e;
        }
    }

    /**
     * Normalises and projects the rows {@code logitRows} of the last layer's output.
     *
     * @param hidden             {@code [T, hidden]}, the residual stream after the last layer (not normalised)
     * @param logitRows          ascending row indices into {@code hidden}
     * @param returnHiddenStates whether to return the normalised hidden states of those rows too
     */
    public ForwardResult apply(Tensor hidden, int[] logitRows, boolean returnHiddenStates) {
        int count = logitRows.length;
        Tensor states = selected.rows(count);
        if (count > 0) {
            if (isLeadingRows(logitRows)) {
                backend.rmsNorm(hidden.rows(count), norm, eps, states);
            } else {
                gather(hidden, logitRows, states);
                backend.rmsNorm(states, norm, eps, states);
            }
        }
        Tensor out = logitsFor(count);
        if (count > 0) backend.matmul(states, projection, out);
        return new ForwardResult(out, returnHiddenStates ? states : null);
    }

    /** Releases the workspace (the norm and projection belong to the model's weights). */
    @Override
    public void close() {
        selected.close();
        logits.close();
    }

    private Tensor logitsFor(int rows) {
        if (rows > logits.rowCount()) {
            int capacity = Math.min(selected.rowCount(), Math.max(rows, 2 * logits.rowCount()));
            logits.close();
            logits = backend.allocate(DType.F32, capacity, projection.rows());
        }
        return logits.rows(rows);
    }

    private static boolean isLeadingRows(int[] rows) {
        for (int i = 0; i < rows.length; i++) {
            if (rows[i] != i) return false;
        }
        return true;
    }

    /**
     * Copies the wanted rows through host memory: the backend interface offers no row gather between tensors.
     * It moves {@code (highest row + 1) × hidden} floats, small next to the forward that produced them.
     */
    private void gather(Tensor hidden, int[] rows, Tensor out) {
        int last = 0;
        for (int r : rows) last = Math.max(last, r);
        float[] source = backend.read(hidden.rows(last + 1));
        float[] picked = new float[rows.length * hiddenSize];
        for (int i = 0; i < rows.length; i++) {
            System.arraycopy(source, rows[i] * hiddenSize, picked, i * hiddenSize, hiddenSize);
        }
        backend.write(picked, out);
    }
}
