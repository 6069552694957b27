package dev.kiln.engine.sampling;

import dev.kiln.api.engine.TokenLogprobs;
import dev.kiln.api.sampling.LogitsProcessor;
import dev.kiln.api.sampling.Sampler;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.engine.scheduler.Sequence;
import java.util.List;
import java.util.random.RandomGenerator;

/**
 * Chooses a sequence's next token from its logits row, in vLLM's order: stop tokens are masked while fewer than
 * {@code minTokens} were generated, the logits processors (the registered ones, then the request's own) rewrite the row, log-probabilities are taken of the
 * result (temperature applied, before truncation), and the sampler draws from the request's random stream. Also
 * verifies speculative draft tokens against the same rows, greedily or by rejection sampling.
 *
 * <p>Works in two vocabulary-sized buffers allocated once. Owned by the engine thread.
 */
public final class TokenSelector {
    /** The chosen token and, when asked for, its log-probabilities. */
    public record Choice(int token, TokenLogprobs logprobs) {}

    /**
     * The outcome of checking a draft token: the token that follows (the draft token when accepted, else its
     * replacement), whether the draft token was accepted, and the token's log-probabilities when asked for.
     */
    public record Verdict(int token, boolean accepted, TokenLogprobs logprobs) {}

    private final int vocab;
    private final int[] endOfSequence;
    private final float[] row;
    private final float[] beforeSampling;

    /**
     * @param vocab         width of a logits row
     * @param endOfSequence the model's end-of-sequence tokens
     */
    public TokenSelector(int vocab, int[] endOfSequence) {
        this.vocab = vocab;
        this.endOfSequence = endOfSequence.clone();
        this.row = new float[vocab];
        this.beforeSampling = new float[vocab];
    }

    /** The model's end-of-sequence tokens. */
    public boolean isEndOfSequence(int token) {
        return contains(endOfSequence, token);
    }

    /**
     * Chooses the next token of the sequence from {@code logits[offset .. offset + vocab)}.
     *
     * @param sampler    the bound sampler, or null: greedy requests are then decoded by argmax here
     * @param processors the bound logits processors, in the order they apply
     * @throws IllegalStateException when the request samples and no sampler is bound
     */
    public Choice choose(Sequence sequence, float[] logits, int offset, Sampler sampler, List<LogitsProcessor> processors) {
        prepare(sequence, logits, offset, processors);
        SamplingParams params = sequence.params();
        int token;
        if (sampler != null) {
            token = sampler.sample(row, sequence, sequence.random());
        } else if (params.isGreedy()) {
            token = argmax(row);
        } else {
            throw noSampler();
        }
        return new Choice(checked(token), logprobs(sequence, token));
    }

    /**
     * Checks one speculative draft token against the target's logits row {@code logits[offset .. offset + vocab)},
     * which predicts the token the draft guessed. The sequence must hold every token before it (accepted draft
     * tokens included), so that stop-token masks and logits processors see what plain decoding would.
     *
     * <p>Greedy requests accept the draft token exactly when it is the token {@link #choose} would pick; otherwise
     * that token is the result. Sampled requests use speculative rejection sampling (Leviathan et al. 2023, Chen et
     * al. 2023): with p the sampler's distribution for the row and q the proposer's, the draft token x is accepted
     * with probability min(1, p(x) / q(x)); a rejected one is replaced by a draw from max(0, p − q), renormalised.
     * The token that results is distributed exactly as p, whatever q is.
     *
     * @param draftProbabilities the proposer's distribution q the token was drawn from, or null when the proposer
     *                           is deterministic (q puts all mass on the draft token)
     */
    public Verdict verify(Sequence sequence, float[] logits, int offset, int draftToken, float[] draftProbabilities,
                          Sampler sampler, List<LogitsProcessor> processors) {
        SamplingParams params = sequence.params();
        if (params.isGreedy()) {
            Choice choice = choose(sequence, logits, offset, sampler, processors);
            return new Verdict(choice.token(), choice.token() == draftToken, choice.logprobs());
        }
        if (sampler == null) throw noSampler();
        prepare(sequence, logits, offset, processors);
        float[] p = sampler.probabilities(row, sequence);
        RandomGenerator random = sequence.random();
        double target = p[draftToken];
        double proposed = draftProbabilities == null ? 1 : draftProbabilities[draftToken];
        if (proposed > 0 && random.nextDouble() * proposed < target) {
            return new Verdict(draftToken, true, logprobs(sequence, draftToken));
        }
        int token = checked(drawResidual(p, draftProbabilities, draftToken, random.nextDouble()));
        return new Verdict(token, false, logprobs(sequence, token));
    }

    /**
     * A draw from max(0, p − q) renormalised, with {@code u} uniform in [0, 1). Should rounding leave no mass (p and
     * q equal to float precision), the draw is from p itself, which is then the same distribution.
     */
    private int drawResidual(float[] p, float[] q, int draftToken, double u) {
        double total = 0;
        for (int v = 0; v < vocab; v++) total += residual(p, q, draftToken, v);
        if (!(total > 0)) return drawFrom(p, u);
        double threshold = u * total;
        double cumulative = 0;
        int last = -1;
        for (int v = 0; v < vocab; v++) {
            double w = residual(p, q, draftToken, v);
            if (w <= 0) continue;
            cumulative += w;
            last = v;
            if (cumulative > threshold) return v;
        }
        return last; // rounding put the threshold past the sum
    }

    private static double residual(float[] p, float[] q, int draftToken, int v) {
        double proposed = q == null ? (v == draftToken ? 1 : 0) : q[v];
        return Math.max(0, p[v] - proposed);
    }

    private int drawFrom(float[] p, double u) {
        double total = 0;
        for (int v = 0; v < vocab; v++) total += p[v];
        double threshold = u * total;
        double cumulative = 0;
        int last = 0;
        for (int v = 0; v < vocab; v++) {
            if (p[v] <= 0) continue;
            cumulative += p[v];
            last = v;
            if (cumulative > threshold) return v;
        }
        return last;
    }

    /** Copies the row, masks stop tokens while fewer than min_tokens were generated, applies the processors. */
    private void prepare(Sequence sequence, float[] logits, int offset, List<LogitsProcessor> processors) {
        System.arraycopy(logits, offset, row, 0, vocab);
        if (sequence.outputLength() < sequence.request().minTokens()) maskStopTokens(sequence);
        for (LogitsProcessor processor : processors) {
            if (processor.appliesTo(sequence)) processor.process(row, sequence);
        }
        for (LogitsProcessor processor : sequence.request().processors()) {
            if (processor.appliesTo(sequence)) processor.process(row, sequence);
        }
        if (sequence.params().logprobs() > 0) System.arraycopy(row, 0, beforeSampling, 0, vocab);
    }

    /** The token's log-probabilities in the prepared row, when the request asked for them. */
    private TokenLogprobs logprobs(Sequence sequence, int token) {
        SamplingParams params = sequence.params();
        return params.logprobs() > 0
                ? Logprobs.of(beforeSampling, 0, vocab, token, params.logprobs(), params.temperature())
                : null;
    }

    private int checked(int token) {
        if (token < 0 || token >= vocab) {
            throw new IllegalStateException("the sampler chose token " + token + " outside the vocabulary of " + vocab);
        }
        return token;
    }

    private static IllegalStateException noSampler() {
        return new IllegalStateException("no sampler service is bound: only greedy requests can be served");
    }

    private void maskStopTokens(Sequence sequence) {
        for (int t : sequence.request().stopTokenIds()) {
            if (t >= 0 && t < vocab) row[t] = Float.NEGATIVE_INFINITY;
        }
        if (!sequence.request().ignoreEos()) {
            for (int t : endOfSequence) {
                if (t >= 0 && t < vocab) row[t] = Float.NEGATIVE_INFINITY;
            }
        }
    }

    private static int argmax(float[] values) {
        int best = 0;
        for (int i = 1; i < values.length; i++) {
            if (values[i] > values[best]) best = i;
        }
        return best;
    }

    /** Whether the array holds the value (stop lists are a handful of tokens). */
    public static boolean contains(int[] values, int value) {
        for (int v : values) {
            if (v == value) return true;
        }
        return false;
    }
}
