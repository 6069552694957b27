package dev.kiln.engine.scheduler;

import dev.kiln.engine.kv.BlockManager;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;

/**
 * Decides, every step, which sequences run and how many of their tokens (vLLM's continuous batching with chunked
 * prefill):
 *
 * <ol>
 *   <li>running sequences that decode (one token to compute) go first, oldest first, so a long prompt never
 *       stalls them;</li>
 *   <li>then running sequences part-way through their prompt take the next chunk the token budget allows;</li>
 *   <li>then waiting requests are admitted first come, first served, while the budget, {@code maxNumSeqs} and
 *       free blocks allow; an admitted request first takes whatever prefix of it is cached. The queue is never
 *       overtaken: if its head does not fit, nobody behind it is admitted.</li>
 * </ol>
 *
 * <p>A decoding sequence with a speculative draft asks for its last token plus the draft tokens, as far as the
 * budget and the free blocks allow; a draft never causes a preemption.
 *
 * <p>When a running sequence needs a block and none is free, the youngest running sequence is preempted by
 * recomputation: its blocks are freed and it goes back to the front of the queue, to be recomputed from its
 * prompt and the tokens generated so far (through the prefix cache where its blocks survived). No request is
 * admitted in a step that preempted one.
 *
 * <p>Owned by the engine thread.
 */
public final class Scheduler {
    /**
     * One sequence's share of a step: {@code tokens} query tokens starting at its first uncomputed one; for a
     * sequence with a draft, its last token followed by the first {@code tokens - 1} draft tokens.
     */
    public record Entry(Sequence sequence, int tokens) {
        /** Draft tokens verified in this step. */
        public int draftTokens() {
            return Math.max(0, tokens - sequence.uncomputed());
        }
    }

    private final BlockManager blocks;
    private final int maxNumSeqs;
    private final int maxBatchedTokens;
    private final Deque<Sequence> waiting = new ArrayDeque<>();
    private final List<Sequence> running = new ArrayList<>();
    private long preemptions;
    private long prefixQueries;
    private long prefixHits;

    /**
     * @param maxNumSeqs       the most sequences in the running batch
     * @param maxBatchedTokens the most query tokens in one step
     */
    public Scheduler(BlockManager blocks, int maxNumSeqs, int maxBatchedTokens) {
        if (maxNumSeqs < 1 || maxBatchedTokens < 1) {
            throw new IllegalArgumentException("max-num-seqs and max-num-batched-tokens must be positive");
        }
        this.blocks = blocks;
        this.maxNumSeqs = maxNumSeqs;
        this.maxBatchedTokens = maxBatchedTokens;
    }

    /** Queues a new request behind the others. */
    public void enqueue(Sequence sequence) {
        sequence.state(Sequence.State.WAITING);
        waiting.addLast(sequence);
    }

    /** Sequences in the running batch. */
    public int runningCount() {
        return running.size();
    }

    /** Sequences waiting for admission, preempted ones included. */
    public int waitingCount() {
        return waiting.size();
    }

    /** Whether any sequence is waiting or running. */
    public boolean hasWork() {
        return !running.isEmpty() || !waiting.isEmpty();
    }

    /** The running batch, in admission order (a copy). */
    public List<Sequence> running() {
        return List.copyOf(running);
    }

    /** Every sequence the scheduler holds: running, then waiting (a copy). */
    public List<Sequence> all() {
        List<Sequence> all = new ArrayList<>(running);
        all.addAll(waiting);
        return all;
    }

    /** Sequences preempted so far. */
    public long preemptions() {
        return preemptions;
    }

    /** Tokens looked up in the prefix cache at admissions. */
    public long prefixQueries() {
        return prefixQueries;
    }

    /** Of those, tokens found. */
    public long prefixHits() {
        return prefixHits;
    }

    /** Takes a sequence out (finished, cancelled or failed) and frees its blocks. */
    public void remove(Sequence sequence) {
        switch (sequence.state()) {
            case RUNNING -> running.remove(sequence);
            case WAITING -> waiting.remove(sequence);
            case FINISHED -> { }
        }
        blocks.free(sequence.blocks());
    }

    /** Plans the next step. Blocks for the planned tokens are allocated; the caller runs them. */
    public List<Entry> schedule() {
        List<Entry> entries = new ArrayList<>();
        int[] budget = {maxBatchedTokens};
        boolean preempted = false;

        // Decodes first, then prompt chunks of sequences already running; both in admission order.
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < running.size() && budget[0] > 0; i++) {
                Sequence s = running.get(i);
                if (s.uncomputed() == 0 || (s.uncomputed() == 1) != (pass == 0)) continue;
                int n = Math.min(s.uncomputed() + (pass == 0 ? s.draftLength() : 0), budget[0]);
                // A draft is worth less than another sequence's place in the batch: it shrinks before anyone is
                // preempted.
                while (n > s.uncomputed() && !blocks.canAllocate(s.blocks(), s.computed() + n, NO_HITS)) n--;
                while (!blocks.canAllocate(s.blocks(), s.computed() + n, NO_HITS)) {
                    Sequence victim = running.getLast();
                    preempt(victim, entries, budget);
                    preempted = true;
                    if (victim == s) break;
                }
                if (s.state() != Sequence.State.RUNNING) {
                    i--; // s left the list; the next one moved into its place
                    continue;
                }
                blocks.allocate(s.blocks(), s.computed() + n, NO_HITS);
                entries.add(new Entry(s, n));
                budget[0] -= n;
            }
        }

        while (!preempted && budget[0] > 0 && running.size() < maxNumSeqs && !waiting.isEmpty()) {
            Sequence s = waiting.peekFirst();
            // Prompt log-probabilities need every prompt row computed: no cached prefix for those requests.
            int[] hits = s.gathersPromptLogprobs() ? NO_HITS
                    : blocks.findCachedPrefix(s.tokens(), s.length(), s.length() - 1);
            int cached = hits.length * blocks.blockSize();
            int n = Math.min(s.length() - cached, budget[0]);
            if (!blocks.canAllocate(s.blocks(), cached + n, hits)) break;
            waiting.pollFirst();
            blocks.allocate(s.blocks(), cached + n, hits);
            s.restartAt(cached);
            s.recordCachedPromptTokens(cached);
            if (!s.gathersPromptLogprobs()) {
                prefixQueries += s.length();
                prefixHits += cached;
            }
            s.state(Sequence.State.RUNNING);
            running.add(s);
            entries.add(new Entry(s, n));
            budget[0] -= n;
        }
        return entries;
    }

    private static final int[] NO_HITS = new int[0];

    /** Frees the sequence's blocks and requeues it at the front; undoes its share of this step if it had one. */
    private void preempt(Sequence victim, List<Entry> entries, int[] budget) {
        for (int i = 0; i < entries.size(); i++) {
            if (entries.get(i).sequence() == victim) {
                budget[0] += entries.remove(i).tokens();
                break;
            }
        }
        running.remove(victim);
        blocks.free(victim.blocks());
        victim.restartAt(0);
        victim.state(Sequence.State.WAITING);
        waiting.addFirst(victim);
        preemptions++;
    }
}
