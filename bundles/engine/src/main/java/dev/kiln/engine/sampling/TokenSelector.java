package dev.kiln.engine.sampling;

import dev.kiln.api.engine.TokenLogprobs;
import dev.kiln.api.sampling.LogitsProcessor;
import dev.kiln.api.sampling.Sampler;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.engine.scheduler.Sequence;
import java.util.List;

/**
 * Chooses a sequence's next token from its logits row, in vLLM's order: stop tokens are masked while fewer than
 * {@code minTokens} were generated, the logits processors rewrite the row, log-probabilities are taken of the
 * result (temperature applied, before truncation), and the sampler draws from the request's random stream.
 *
 * <p>Works in two vocabulary-sized buffers allocated once. Owned by the engine thread.
 */
public final class TokenSelector {
    /** The chosen token and, when asked for, its log-probabilities. */
    public record Choice(int token, TokenLogprobs logprobs) {}

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
        System.arraycopy(logits, offset, row, 0, vocab);
        SamplingParams params = sequence.params();
        if (sequence.outputLength() < sequence.request().minTokens()) maskStopTokens(sequence);
        for (LogitsProcessor processor : processors) {
            if (processor.appliesTo(sequence)) processor.process(row, sequence);
        }
        int logprobs = params.logprobs();
        if (logprobs > 0) System.arraycopy(row, 0, beforeSampling, 0, vocab);
        int token;
        if (sampler != null) {
            token = sampler.sample(row, sequence, sequence.random());
        } else if (params.isGreedy()) {
            token = argmax(row);
        } else {
            throw new IllegalStateException("no sampler service is bound: only greedy requests can be served");
        }
        if (token < 0 || token >= vocab) {
            throw new IllegalStateException("the sampler chose token " + token + " outside the vocabulary of " + vocab);
        }
        TokenLogprobs lp = logprobs > 0
                ? Logprobs.of(beforeSampling, 0, vocab, token, logprobs, params.temperature())
                : null;
        return new Choice(token, lp);
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
