package dev.kiln.models.runner;

import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.api.model.ForwardResult;
import java.util.Arrays;
import java.util.function.IntPredicate;

/**
 * Runs one sequence through a model, one forward at a time, over a KV cache whose blocks {@code blocks} (in order,
 * any ids) hold the sequence: prompts are prefilled in chunks of at most {@code chunkTokens}, then tokens are
 * appended one by one. It schedules nothing and shares nothing; the engine's scheduler does that for real serving.
 *
 * <p>Not thread-safe; the model and cache must not be used by anything else while it runs.
 */
public final class SequenceRunner {
    private final CausalLanguageModel model;
    private final KvCache cache;
    private final int[] blocks;
    private final int chunkTokens;
    private int length;

    /** A runner that prefills in chunks as large as the model accepts. */
    public SequenceRunner(CausalLanguageModel model, KvCache cache, int[] blocks) {
        this(model, cache, blocks, model.maxBatchTokens());
    }

    /**
     * @param blocks      cache block ids for the sequence, in order; they bound its length
     * @param chunkTokens the most tokens per forward, at most {@link CausalLanguageModel#maxBatchTokens()}
     */
    public SequenceRunner(CausalLanguageModel model, KvCache cache, int[] blocks, int chunkTokens) {
        if (chunkTokens <= 0 || chunkTokens > model.maxBatchTokens()) {
            throw new IllegalArgumentException("chunk of " + chunkTokens + " tokens, the model takes 1.."
                    + model.maxBatchTokens());
        }
        for (int b : blocks) {
            if (b < 0 || b >= cache.numBlocks()) {
                throw new IllegalArgumentException("block " + b + " outside the cache's " + cache.numBlocks() + " blocks");
            }
        }
        this.model = model;
        this.cache = cache;
        this.blocks = blocks.clone();
        this.chunkTokens = chunkTokens;
    }

    /** Tokens in the cache so far. */
    public int length() {
        return length;
    }

    /** The most tokens the sequence's blocks hold. */
    public int capacity() {
        return blocks.length * cache.blockSize();
    }

    /** Forgets the sequence; its blocks are overwritten from the start by the next append. */
    public void reset() {
        length = 0;
    }

    /**
     * Appends tokens to the sequence and returns the logits that predict the token after the last of them.
     *
     * @throws IllegalArgumentException when tokens is empty or the sequence would outgrow its blocks
     */
    public float[] append(int... tokens) {
        float[][] logits = run(tokens, false);
        return logits[0];
    }

    /**
     * Appends tokens and returns the logits after every one of them ({@code [tokens.length][vocab]}), e.g. to
     * score a text (perplexity) or to compare a prefill with a reference.
     */
    public float[][] score(int... tokens) {
        return run(tokens, true);
    }

    /**
     * Greedy decoding: appends the prompt, then repeatedly appends the most likely next token.
     *
     * @param maxNewTokens the most tokens to generate
     * @param stop         tokens that end generation (included in the result)
     * @return the generated tokens, without the prompt
     */
    public int[] generateGreedy(int[] prompt, int maxNewTokens, IntPredicate stop) {
        int[] generated = new int[maxNewTokens];
        int count = 0;
        float[] logits = append(prompt);
        while (count < maxNewTokens) {
            int next = argmax(logits);
            generated[count++] = next;
            if (stop.test(next) || count == maxNewTokens) break;
            logits = append(next);
        }
        return Arrays.copyOf(generated, count);
    }

    /** The index of the largest value (the first one on ties). */
    public static int argmax(float[] values) {
        int best = 0;
        for (int i = 1; i < values.length; i++) {
            if (values[i] > values[best]) best = i;
        }
        return best;
    }

    private float[][] run(int[] tokens, boolean everyToken) {
        if (tokens.length == 0) throw new IllegalArgumentException("nothing to append");
        if (length + tokens.length > capacity()) {
            throw new IllegalArgumentException("the sequence would reach " + (length + tokens.length)
                    + " tokens, its blocks hold " + capacity());
        }
        int vocab = model.vocabSize();
        float[][] logits = new float[everyToken ? tokens.length : 1][];
        for (int start = 0; start < tokens.length; start += chunkTokens) {
            int n = Math.min(chunkTokens, tokens.length - start);
            boolean lastChunk = start + n == tokens.length;
            int[] logitRows = everyToken ? range(n) : lastChunk ? new int[] {n - 1} : new int[0];
            ForwardResult result = model.forward(chunk(Arrays.copyOfRange(tokens, start, start + n), logitRows), cache);
            if (logitRows.length > 0) {
                float[] values = model.backend().read(result.logits());
                for (int r = 0; r < logitRows.length; r++) {
                    logits[everyToken ? start + r : 0] = Arrays.copyOfRange(values, r * vocab, (r + 1) * vocab);
                }
            }
            length += n;
        }
        return logits;
    }

    /** The forward batch appending {@code tokens} after the {@link #length} cached ones. */
    private ForwardBatch chunk(int[] tokens, int[] logitRows) {
        int blockSize = cache.blockSize();
        int context = length + tokens.length;
        int[] positions = new int[tokens.length];
        int[] slots = new int[tokens.length];
        for (int j = 0; j < tokens.length; j++) {
            int position = length + j;
            positions[j] = position;
            slots[j] = blocks[position / blockSize] * blockSize + position % blockSize;
        }
        int[] table = Arrays.copyOf(blocks, (context + blockSize - 1) / blockSize);
        var attention = new AttentionMetadata(new int[] {0, tokens.length}, new int[] {context}, new int[][] {table}, slots);
        return new ForwardBatch(tokens, positions, attention, logitRows, false);
    }

    private static int[] range(int n) {
        int[] r = new int[n];
        for (int i = 0; i < n; i++) r[i] = i;
        return r;
    }
}
