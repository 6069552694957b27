package dev.kiln.spec.mtp;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardResult;
import dev.kiln.api.speculative.Draft;
import dev.kiln.api.speculative.DraftRequest;
import dev.kiln.api.speculative.DraftSession;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.engine.drafting.DraftBatch;
import dev.kiln.engine.drafting.DraftCache;
import dev.kiln.models.deepseek.MtpHead;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * One engine's MTP drafting: the module's cache holds, for each sequence, an entry per position {@code j} computed
 * from the target's hidden state at {@code j} and the token at {@code j + 1} (DeepSeek-V3's MTP, vLLM's
 * {@code deepseek_mtp}).
 *
 * <p>Every call first adds the entries the target's latest hidden states allow (after rolling back entries whose
 * tokens the sequence no longer has), all sequences in one batched forward of the module; the entry of the
 * sequence's second-to-last position predicts the token after its last one, the first draft token. Further draft
 * tokens chain: the module's own output state at a position stands in for the target's hidden state of the next
 * one, with the draft token just predicted as its token; these speculative entries are overwritten once the
 * target's real states arrive. Drafts are greedy (deterministic).
 *
 * <p>Positions whose target states never reached the session (a prefix found in the target's prefix cache, or
 * computed while another proposer was active) are copied from another sequence that shares the prefix and whose
 * entries are still in the cache (finished sequences stay until their blocks are needed), else get entries from a
 * zero hidden state: the module then predicts from the token alone there. Drafts only ever cost speed, so this is
 * a quality trade-off, not a correctness one.
 *
 * <p>The module shares the target model's workspace, which is free between the target's forwards, exactly when the
 * engine calls {@link #propose}.
 */
final class MtpSession implements DraftSession {
    private final MtpHead head;
    private final ComputeBackend backend;
    private final KvCache kv;
    private final DraftCache cache;
    private final DraftBatch batch;
    private final Tensor previous;
    private final int hidden;
    private final int vocab;
    private final float[] previousRows;
    private boolean closed;

    /** One sequence's drafting in a call. */
    private static final class Work {
        final int request;
        final DraftCache.Entry entry;
        final DraftRequest source;
        final int from;
        final int end;
        final int[] draft;
        float[] state;

        Work(int request, DraftCache.Entry entry, DraftRequest source, int from, int end, int k) {
            this.request = request;
            this.entry = entry;
            this.source = source;
            this.from = from;
            this.end = end;
            this.draft = new int[k];
        }
    }

    /**
     * @param numBlocks blocks of the module's own cache
     * @param blockSize token slots per block
     */
    MtpSession(CausalLanguageModel target, MtpHead head, int numBlocks, int blockSize) {
        this.head = head;
        this.backend = target.backend();
        this.hidden = head.hiddenSize();
        this.vocab = head.vocabSize();
        int capacity = head.maxBatchTokens();
        this.kv = head.allocateKvCache(numBlocks, blockSize);
        this.cache = new DraftCache(numBlocks, blockSize);
        this.batch = new DraftBatch(cache, capacity);
        this.previous = backend.allocate(DType.F32, capacity, hidden);
        this.previousRows = new float[capacity * hidden];
    }

    @Override
    public boolean needsTargetHiddenStates() {
        return true;
    }

    @Override
    public List<Draft> propose(List<DraftRequest> requests) {
        List<Draft> drafts = new ArrayList<>(Collections.nCopies(requests.size(), Draft.NONE));
        List<Work> work = new ArrayList<>();
        Set<DraftCache.Entry> keep = new HashSet<>();
        int longest = 0;
        for (int i = 0; i < requests.size(); i++) {
            DraftRequest r = requests.get(i);
            int rows = r.hiddenRows(hidden);
            if (rows == 0) continue; // nothing new to learn from: wait for the target's states
            int length = r.tokens().length;
            // Entry j needs the token at j + 1: the sequence's last token closes the entries it can have.
            int end = Math.min(r.targetHiddenFrom() + rows, length - 1);
            if (end <= 0) continue;
            DraftCache.Entry entry = cache.entry(r.sequenceId());
            // Entry j depends on tokens 0 .. j + 1.
            int valid = Math.min(entry.cached(), Math.max(0, entry.agreement(r.tokens()) - 1));
            int k = end == length - 1 ? r.maxTokens() : 0;
            // Drafting needs the logits of entry length - 2, so that one is computed even if it is cached.
            int from = k > 0 ? Math.min(valid, end - 1) : valid;
            if (from >= end) continue;
            keep.add(entry);
            DraftCache.Donor donor = from < r.targetHiddenFrom() ? cache.donorFor(entry, r.tokens()) : null;
            if (donor != null) keep.add(donor.entry());
            if (!cache.reserve(entry, Math.max(end, end + k - 1), keep)) {
                keep.remove(entry);
                cache.retire(r.sequenceId());
                continue;
            }
            if (donor != null) from = Math.max(from, adopt(donor, entry, Math.min(r.targetHiddenFrom(), end - 1)));
            entry.cached(from);
            entry.tokens(r.tokens(), length);
            work.add(new Work(i, entry, r, from, end, k));
            longest = Math.max(longest, k);
        }
        if (work.isEmpty()) return drafts;
        try {
            catchUp(work);
            for (int j = 1; j < longest; j++) chain(work, j);
        } catch (RuntimeException e) {
            for (Work w : work) cache.release(w.entry.key());
            throw e;
        }
        for (Work w : work) {
            if (w.draft.length > 0) drafts.set(w.request, Draft.of(w.draft));
        }
        return drafts;
    }

    /**
     * Copies into {@code entry} the donor's entries for the positions both sequences agree on, up to {@code limit}:
     * the states of a shared prefix the target took from its prefix cache, which this session saw for the donor.
     * Returns how many leading positions {@code entry} now holds.
     */
    private int adopt(DraftCache.Donor donor, DraftCache.Entry entry, int limit) {
        int positions = Math.min(limit, Math.min(donor.entry().cached(), donor.agreement() - 1));
        if (positions <= entry.cached()) return entry.cached();
        int[][] plan = cache.copyPlan(donor.entry(), entry, positions);
        kv.copyBlocks(plan[0], plan[1]);
        return positions;
    }

    /** Adds the entries the new hidden states allow; the last one of a drafting sequence gives its first token. */
    private void catchUp(List<Work> work) {
        List<Work> owners = new ArrayList<>();
        batch.clear();
        for (Work w : work) {
            int position = w.from;
            int[] tokens = w.source.tokens();
            while (position < w.end) {
                if (batch.room() == 0) {
                    run(owners, 0);
                    owners.clear();
                }
                int n = Math.min(w.end - position, batch.room());
                boolean last = position + n == w.end && w.draft.length > 0;
                stageHidden(w.source, position, n, batch.size());
                // The token paired with position j is the one at j + 1.
                batch.add(w.entry, tokens, position + 1, n, position, last);
                if (last) owners.add(w);
                position += n;
            }
            w.entry.cached(w.end);
        }
        run(owners, 0);
    }

    /** Copies the target's states of positions {@code from .. from + n - 1} (zeros where none came) to batch rows. */
    private void stageHidden(DraftRequest r, int from, int n, int row) {
        int first = r.targetHiddenFrom();
        int rows = r.hiddenRows(hidden);
        for (int j = 0; j < n; j++) {
            int position = from + j;
            int at = (row + j) * hidden;
            if (position >= first && position < first + rows) {
                System.arraycopy(r.targetHidden(), (position - first) * hidden, previousRows, at, hidden);
            } else {
                Arrays.fill(previousRows, at, at + hidden, 0f);
            }
        }
    }

    /** One more draft token for each sequence still drafting, from its previous output state and draft token. */
    private void chain(List<Work> work, int j) {
        List<Work> owners = new ArrayList<>();
        batch.clear();
        for (Work w : work) {
            if (w.draft.length <= j) continue;
            if (batch.room() == 0) {
                run(owners, j);
                owners.clear();
            }
            System.arraycopy(w.state, 0, previousRows, batch.size() * hidden, hidden);
            // A speculative entry at the position after the real ones: overwritten when the target's state comes.
            batch.add(w.entry, w.draft, j - 1, 1, w.end + j - 1, true);
            owners.add(w);
        }
        run(owners, j);
    }

    /** Runs the batch; logit row i gives draft token {@code j} (and the next output state) of owner i. */
    private void run(List<Work> owners, int j) {
        int size = batch.size();
        if (size == 0) return;
        boolean wantsLogits = !owners.isEmpty();
        backend.write(Arrays.copyOf(previousRows, size * hidden), previous);
        ForwardResult result = head.forward(previous, batch.build(wantsLogits), kv);
        if (wantsLogits) {
            float[] logits = backend.read(result.logits());
            float[] states = backend.read(result.hiddenStates());
            for (int i = 0; i < owners.size(); i++) {
                Work w = owners.get(i);
                w.draft[j] = argmax(logits, i * vocab, vocab);
                w.state = Arrays.copyOfRange(states, i * hidden, (i + 1) * hidden);
            }
        }
        batch.clear();
    }

    private static int argmax(float[] values, int offset, int length) {
        int best = 0;
        for (int i = 1; i < length; i++) {
            if (values[offset + i] > values[offset + best]) best = i;
        }
        return best;
    }

    /**
     * A finished sequence's entries stay until their blocks are needed: a later sequence with the same prefix (a
     * system prompt, a repeated request) copies them instead of starting from zero states.
     */
    @Override
    public void release(String sequenceId) {
        cache.retire(sequenceId); // evicted, least recently used first, when blocks are needed
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        cache.clear();
        kv.close();
        previous.close();
    }
}
