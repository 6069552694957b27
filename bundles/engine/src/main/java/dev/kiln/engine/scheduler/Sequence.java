package dev.kiln.engine.scheduler;

import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.TokenListener;
import dev.kiln.api.engine.TokenLogprobs;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.api.sampling.SequenceView;
import dev.kiln.engine.kv.BlockTable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.random.RandomGenerator;

/**
 * One request as the engine tracks it: its tokens (prompt, then output), how many of them are in the KV cache,
 * its block table, its random stream, and what it still owes its listener.
 *
 * <p>The token state is owned by the engine thread. {@link #isDone()} and {@link #requestCancel()} are safe from
 * any thread.
 */
public final class Sequence implements SequenceView {
    /** Where the sequence is. */
    public enum State { WAITING, RUNNING, FINISHED }

    /**
     * Draft tokens to verify in the sequence's next step, after its last token.
     *
     * @param tokens        the draft tokens
     * @param probabilities the proposer's distribution for each, or null for a deterministic draft
     * @param proposer      the name of the proposer that drafted them (for its statistics)
     * @param session       which of the engine's draft sessions drafted them
     */
    public record PendingDraft(int[] tokens, float[][] probabilities, String proposer, long session) {}

    private final GenerationRequest request;
    private final TokenListener listener;
    private final long arrival;
    private final int promptLength;
    private final int[] prompt;
    private final RandomGenerator random;
    private final BlockTable blocks = new BlockTable();
    private final List<TokenLogprobs> promptLogprobs;
    private final AtomicBoolean cancelRequested = new AtomicBoolean();
    private volatile boolean done;

    private int[] tokens;
    private int length;
    private int computed;
    private int cachedPromptTokens = -1;
    private boolean firstEventSent;
    private State state = State.WAITING;
    private int[] outputView;
    private PendingDraft draft;
    private final int[] endOfSequence;

    /**
     * @param arrival submission order, for first-come-first-served
     */
    public Sequence(GenerationRequest request, TokenListener listener, long arrival) {
        this(request, listener, arrival, new int[0]);
    }

    /**
     * @param arrival       submission order, for first-come-first-served
     * @param endOfSequence the model's end-of-sequence tokens, for the logits processors
     */
    public Sequence(GenerationRequest request, TokenListener listener, long arrival, int[] endOfSequence) {
        this.endOfSequence = endOfSequence.clone();
        this.request = request;
        this.listener = listener;
        this.arrival = arrival;
        this.prompt = request.promptTokens().clone();
        this.promptLength = prompt.length;
        // Room for a few tokens up front; grows by doubling (maxTokens may be far larger than what is produced).
        this.tokens = Arrays.copyOf(prompt, promptLength + Math.min(request.maxTokens(), 64) + 1);
        this.length = promptLength;
        Long seed = request.sampling().seed();
        this.random = seed != null ? new SplittableRandom(seed) : new SplittableRandom();
        this.promptLogprobs = request.promptLogprobs() >= 0 ? new ArrayList<>() : null;
    }

    @Override
    public int[] endOfSequenceTokens() {
        return endOfSequence.clone();
    }

    /** The request. */
    public GenerationRequest request() {
        return request;
    }

    /** The request's id. */
    public String id() {
        return request.id();
    }

    /** The listener of the request. */
    public TokenListener listener() {
        return listener;
    }

    /** Submission order. */
    public long arrival() {
        return arrival;
    }

    /** The request's random stream (seeded when the request gave a seed). */
    public RandomGenerator random() {
        return random;
    }

    /** The sequence's KV cache blocks. */
    public BlockTable blocks() {
        return blocks;
    }

    /** All tokens, prompt then output; valid up to {@link #length()}. */
    public int[] tokens() {
        return tokens;
    }

    /** Tokens so far, prompt and output. */
    public int length() {
        return length;
    }

    /** Prompt tokens. */
    public int promptLength() {
        return promptLength;
    }

    /** Tokens generated so far. */
    public int outputLength() {
        return length - promptLength;
    }

    /** Tokens whose keys and values are in the cache. */
    public int computed() {
        return computed;
    }

    /** Tokens still to run through the model before the next token can be sampled. */
    public int uncomputed() {
        return length - computed;
    }

    /** Records that {@code n} more tokens were run through the model. */
    public void advance(int n) {
        if (n < 0 || computed + n > length) throw new IllegalArgumentException(n + " tokens past " + computed + "/" + length);
        computed += n;
    }

    /** Starts over from a cached prefix of {@code cachedTokens} (0 after preemption without cache hits). */
    public void restartAt(int cachedTokens) {
        computed = cachedTokens;
        draft = null;
    }

    /** The draft waiting for verification, or null. */
    public PendingDraft draft() {
        return draft;
    }

    /** Draft tokens waiting for verification (0 without a draft). */
    public int draftLength() {
        return draft == null ? 0 : draft.tokens().length;
    }

    /** Sets the draft to verify in the next step, or null for none. */
    public void setDraft(PendingDraft draft) {
        this.draft = draft;
    }

    /** The key under which draft sessions know the sequence: unique among the engine's sequences, ever. */
    public String draftKey() {
        return request.id() + "#" + arrival;
    }

    /** Appends a generated token. */
    public void append(int token) {
        if (length == tokens.length) tokens = Arrays.copyOf(tokens, tokens.length * 2);
        tokens[length++] = token;
        outputView = null;
    }

    /**
     * Takes back the last token, a placeholder for a token the device is still choosing (negative, see
     * {@link dev.kiln.api.backend.PendingTokens#placeholder}), before the chosen token is appended for real.
     *
     * @throws IllegalStateException if the last token is not a placeholder or its keys and values are counted as
     *                               computed
     */
    public void dropPlaceholder() {
        if (length == promptLength || tokens[length - 1] >= 0 || computed == length) {
            throw new IllegalStateException("no placeholder to drop at the end of " + this);
        }
        length--;
        outputView = null;
    }

    /** Prompt tokens found in the prefix cache when the request was first admitted (0 before that). */
    public int cachedPromptTokens() {
        return Math.max(0, cachedPromptTokens);
    }

    /** Records prefix-cache hits at admission; only the first admission counts for the request's usage. */
    public void recordCachedPromptTokens(int tokens) {
        if (cachedPromptTokens < 0) cachedPromptTokens = Math.min(tokens, promptLength);
    }

    /** Prompt log-probabilities gathered so far (one per prompt token after the first), or null if not asked. */
    public List<TokenLogprobs> promptLogprobs() {
        return promptLogprobs;
    }

    /** Whether prompt log-probabilities are still being gathered (they need every prompt row computed). */
    public boolean gathersPromptLogprobs() {
        return promptLogprobs != null && !firstEventSent && promptLogprobs.size() < promptLength - 1;
    }

    /** Whether the first event went out. */
    public boolean firstEventSent() {
        return firstEventSent;
    }

    /** Records that the first event went out. */
    public void markFirstEventSent() {
        firstEventSent = true;
    }

    /** Where the sequence is (engine thread only). */
    public State state() {
        return state;
    }

    void state(State state) {
        this.state = state;
    }

    /** Marks the sequence finished; from then on {@link #isDone()} is true. */
    public void finish() {
        state = State.FINISHED;
        done = true;
    }

    /** Whether the request finished, in any way (any thread). */
    public boolean isDone() {
        return done;
    }

    /** Asks for cancellation; true the first time, while the request is not done (any thread). */
    public boolean requestCancel() {
        return !done && cancelRequested.compareAndSet(false, true);
    }

    @Override
    public int[] promptTokens() {
        return prompt;
    }

    @Override
    public int[] outputTokens() {
        int[] view = outputView;
        if (view == null) {
            view = Arrays.copyOfRange(tokens, promptLength, length);
            outputView = view;
        }
        return view;
    }

    @Override
    public SamplingParams params() {
        return request.sampling();
    }

    @Override
    public String toString() {
        return "request " + request.id() + " (" + promptLength + " prompt + " + outputLength() + " output tokens, "
                + computed + " computed, " + state + ")";
    }
}
