package dev.kiln.spec.draft;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardResult;
import dev.kiln.api.speculative.Draft;
import dev.kiln.api.speculative.DraftRequest;
import dev.kiln.api.speculative.DraftSession;
import dev.kiln.engine.drafting.DraftBatch;
import dev.kiln.engine.drafting.DraftCache;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One engine's draft model: loaded in the background when the session opens (until then the session drafts
 * nothing), with a paged KV cache of its own.
 *
 * <p>Each call drafts for all its sequences together: one batched forward catches every sequence up with the
 * tokens the target accepted since its last draft (after rolling back what the target rejected: the cache keeps
 * only entries computed from tokens the sequence still has), which gives the first draft token of each; then
 * {@code k - 1} batched forwards of one token per sequence give the rest. Drafts are greedy, so they carry no
 * probabilities (the engine's rejection sampling stays exact with deterministic drafts). A draft model with a
 * larger vocabulary drafts only tokens the target has; one with a smaller vocabulary drafts nothing for sequences
 * holding a token it does not have.
 */
final class DraftModelSession implements DraftSession {
    private static final Logger LOG = LoggerFactory.getLogger(DraftModelSession.class);

    /** Loads the draft model onto the target's backend. */
    @FunctionalInterface
    interface Loader {
        DraftModelProposer.DraftModel load(ComputeBackend backend) throws Exception;
    }

    /** What is needed once the model is loaded. */
    private record Ready(CausalLanguageModel model, Runnable release, KvCache kv, DraftCache cache, DraftBatch batch,
                         int vocab, int maxPositions) {
        void close() {
            kv.close();
            model.close();
            release.run();
        }
    }

    /** One sequence's drafting in a call. */
    private static final class Work {
        final int request;
        final DraftCache.Entry entry;
        final int[] tokens;
        final int from;
        final int[] draft;

        Work(int request, DraftCache.Entry entry, int[] tokens, int from, int k) {
            this.request = request;
            this.entry = entry;
            this.tokens = tokens;
            this.from = from;
            this.draft = new int[k];
        }
    }

    private final CausalLanguageModel target;
    private final long kvCacheMemory;
    private final int blockSize;
    private final Thread loading;
    private volatile Ready ready;
    private volatile String status = "loading";
    private boolean closed;

    /**
     * @param kvCacheMemory bytes of the draft model's own KV cache
     * @param blockSize     token slots per block of that cache
     */
    DraftModelSession(CausalLanguageModel target, Loader loader, long kvCacheMemory, int blockSize) {
        this.target = target;
        this.kvCacheMemory = kvCacheMemory;
        this.blockSize = blockSize;
        this.loading = Thread.ofPlatform().daemon().name("kiln-draft-model-loader").unstarted(() -> load(loader));
        loading.start();
    }

    private void load(Loader loader) {
        DraftModelProposer.DraftModel loaded = null;
        CausalLanguageModel model = null;
        KvCache kv = null;
        try {
            loaded = loader.load(target.backend());
            model = loaded.model();
            long bytesPerBlock = model.kvCacheSpec().bytesPerToken() * blockSize;
            int blocks = (int) Math.min(Integer.MAX_VALUE / blockSize, kvCacheMemory / bytesPerBlock);
            if (blocks < 1) throw new IllegalArgumentException("kv-cache-memory of " + kvCacheMemory + " bytes holds no block");
            kv = model.allocateKvCache(blocks, blockSize);
            var cache = new DraftCache(blocks, blockSize);
            var r = new Ready(model, loaded.release(), kv, cache, new DraftBatch(cache, model.maxBatchTokens()),
                    Math.min(model.vocabSize(), target.vocabSize()), model.config().maxPositionEmbeddings());
            synchronized (this) {
                if (!closed) {
                    ready = r;
                    status = "ready: " + model.architecture() + ", " + blocks + " KV blocks of " + blockSize;
                    LOG.info("draft model {} ready ({} KV blocks of {} tokens)", model.architecture(), blocks, blockSize);
                    return;
                }
            }
        } catch (InterruptedException e) {
            status = "closed while loading";
        } catch (Exception | LinkageError e) {
            status = "failed: " + e.getMessage();
            LOG.error("the draft model could not be loaded; the draft-model proposer drafts nothing", e);
        }
        if (kv != null) kv.close();
        if (model != null) model.close();
        if (loaded != null) loaded.release().run();
    }

    /** Loading, ready (and with what), or why it failed. */
    String status() {
        return status;
    }

    /** Whether the model is loaded. */
    boolean isReady() {
        return ready != null;
    }

    @Override
    public boolean needsTargetHiddenStates() {
        return false;
    }

    @Override
    public List<Draft> propose(List<DraftRequest> requests) {
        List<Draft> drafts = new ArrayList<>(Collections.nCopies(requests.size(), Draft.NONE));
        Ready r = ready;
        if (r == null) return drafts;
        List<Work> work = new ArrayList<>();
        Set<DraftCache.Entry> keep = new HashSet<>();
        int longest = 0;
        for (int i = 0; i < requests.size(); i++) {
            DraftRequest request = requests.get(i);
            int[] tokens = request.tokens();
            int length = tokens.length;
            // The draft model's own positions bound the draft: the last one drafted sits at length + k - 2.
            int k = Math.min(request.maxTokens(), r.maxPositions() - length + 1);
            if (k <= 0 || length == 0) continue;
            DraftCache.Entry entry = r.cache().entry(request.sequenceId());
            keep.add(entry);
            if (!r.cache().reserve(entry, length + k - 1, keep)) {
                keep.remove(entry);
                continue; // no room even after evicting the idle: this sequence decodes without drafts
            }
            // Entries computed from tokens the sequence no longer has are stale; the last token is always run.
            int valid = Math.min(entry.cached(), Math.min(entry.agreement(tokens), length - 1));
            if (!within(tokens, valid, r.model().vocabSize())) {
                // A token the draft model does not have (its vocabulary is smaller): it cannot follow this one.
                r.cache().release(request.sequenceId());
                keep.remove(entry);
                continue;
            }
            entry.cached(valid);
            entry.tokens(tokens, length);
            work.add(new Work(i, entry, tokens, valid, k));
            longest = Math.max(longest, k);
        }
        if (work.isEmpty()) return drafts;
        try {
            catchUp(r, work);
            for (int j = 1; j < longest; j++) extend(r, work, j);
        } catch (RuntimeException e) {
            // What these sequences have in the cache is unknown now: they start over next time.
            for (Work w : work) r.cache().release(w.entry.key());
            throw e;
        }
        for (Work w : work) drafts.set(w.request, Draft.of(w.draft));
        return drafts;
    }

    /** Runs every sequence's uncached tokens; the logits after the last give its first draft token. */
    private void catchUp(Ready r, List<Work> work) {
        DraftBatch batch = r.batch();
        List<Work> owners = new ArrayList<>();
        batch.clear();
        for (Work w : work) {
            int position = w.from;
            int end = w.tokens.length;
            while (position < end) {
                if (batch.room() == 0) {
                    run(r, owners, 0);
                    owners.clear();
                }
                int n = Math.min(end - position, batch.room());
                boolean last = position + n == end;
                batch.add(w.entry, w.tokens, position, n, position, last);
                if (last) owners.add(w);
                position += n;
            }
            w.entry.cached(end);
        }
        run(r, owners, 0);
    }

    /** Feeds every sequence still drafting its draft token {@code j - 1}; the logits give token {@code j}. */
    private void extend(Ready r, List<Work> work, int j) {
        DraftBatch batch = r.batch();
        List<Work> owners = new ArrayList<>();
        batch.clear();
        for (Work w : work) {
            if (w.draft.length <= j) continue;
            if (batch.room() == 0) {
                run(r, owners, j);
                owners.clear();
            }
            int position = w.tokens.length + j - 1;
            batch.add(w.entry, w.draft, j - 1, 1, position, true);
            w.entry.append(w.draft[j - 1]);
            w.entry.cached(position + 1);
            owners.add(w);
        }
        run(r, owners, j);
    }

    /** Runs the batch; logit row i is the next draft token (index {@code j}) of {@code owners.get(i)}. */
    private void run(Ready r, List<Work> owners, int j) {
        DraftBatch batch = r.batch();
        if (batch.size() == 0) return;
        ForwardResult result = r.model().forward(batch.build(false), r.kv());
        if (!owners.isEmpty()) {
            float[] logits = r.model().backend().read(result.logits());
            int width = r.model().vocabSize();
            for (int i = 0; i < owners.size(); i++) owners.get(i).draft[j] = argmax(logits, i * width, r.vocab());
        }
        batch.clear();
    }

    private static boolean within(int[] tokens, int from, int vocab) {
        for (int i = from; i < tokens.length; i++) {
            if (tokens[i] >= vocab) return false;
        }
        return true;
    }

    private static int argmax(float[] values, int offset, int length) {
        int best = 0;
        for (int i = 1; i < length; i++) {
            if (values[offset + i] > values[offset + best]) best = i;
        }
        return best;
    }

    @Override
    public void release(String sequenceId) {
        Ready r = ready;
        if (r != null) r.cache().release(sequenceId);
    }

    @Override
    public void close() {
        Ready r;
        synchronized (this) {
            if (closed) return;
            closed = true;
            r = ready;
            ready = null;
        }
        loading.interrupt(); // a load in progress drops what it made
        if (r != null) r.close();
        status = "closed";
    }
}
