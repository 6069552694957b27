package dev.kiln.engine.testing;

import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.speculative.Draft;
import dev.kiln.api.speculative.DraftRequest;
import dev.kiln.api.speculative.DraftSession;
import dev.kiln.api.speculative.SpeculativeProposer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;

/**
 * A proposer for tests: drafts what a script says for each request, records every request, and checks the session
 * contract as it goes (no call after close, no concurrent calls).
 */
public final class ScriptedProposer implements SpeculativeProposer {
    private final Function<DraftRequest, int[]> script;
    private final boolean needsHidden;
    private final List<DraftRequest> requests = new CopyOnWriteArrayList<>();
    private final List<String> violations = new CopyOnWriteArrayList<>();
    private final List<Integer> batchSizes = new CopyOnWriteArrayList<>();
    private final AtomicInteger opened = new AtomicInteger();
    private final AtomicInteger closed = new AtomicInteger();
    private final AtomicInteger released = new AtomicInteger();
    private volatile int failEvery;
    private final AtomicInteger calls = new AtomicInteger();

    public ScriptedProposer(Function<DraftRequest, int[]> script, boolean needsHidden) {
        this.script = script;
        this.needsHidden = needsHidden;
    }

    /**
     * Drafts the known greedy continuation of each prompt (prompts are told apart by their first tokens), with
     * every {@code wrongEvery}-th continuation token (counted from the first output token) replaced by a wrong
     * one; 0 never corrupts.
     */
    public static ScriptedProposer oracle(int[][] prompts, int[][] continuations, int wrongEvery, int vocab) {
        return new ScriptedProposer(r -> {
            for (int p = 0; p < prompts.length; p++) {
                int[] prompt = prompts[p];
                if (r.tokens().length < prompt.length || !Arrays.equals(r.tokens(), 0, prompt.length, prompt, 0, prompt.length)) {
                    continue;
                }
                int generated = r.tokens().length - prompt.length;
                int n = Math.max(0, Math.min(r.maxTokens(), continuations[p].length - generated));
                int[] draft = Arrays.copyOfRange(continuations[p], generated, generated + n);
                for (int j = 0; j < n; j++) {
                    if (wrongEvery > 0 && (generated + j) % wrongEvery == wrongEvery - 1) draft[j] = (draft[j] + 1) % vocab;
                }
                return draft;
            }
            return new int[0];
        }, false);
    }

    /** The same script, but asking for the target's hidden states. */
    public ScriptedProposer withHiddenStates() {
        return new ScriptedProposer(script, true);
    }

    /** Makes every n-th call to propose throw (0: never). */
    public ScriptedProposer failingEvery(int n) {
        this.failEvery = n;
        return this;
    }

    @Override
    public DraftSession open(CausalLanguageModel target) {
        opened.incrementAndGet();
        return new Session();
    }

    public List<DraftRequest> requests() {
        return List.copyOf(requests);
    }

    /** Requests per call to propose. */
    public List<Integer> batchSizes() {
        return List.copyOf(batchSizes);
    }

    public List<String> violations() {
        return List.copyOf(violations);
    }

    public int opened() {
        return opened.get();
    }

    public int closed() {
        return closed.get();
    }

    public int released() {
        return released.get();
    }

    /** Every hidden state row received, by sequence and position (the last one received for a position wins). */
    public Map<String, Map<Integer, float[]>> hiddenStates(int hiddenSize) {
        Map<String, Map<Integer, float[]>> out = new HashMap<>();
        for (DraftRequest r : requests) {
            if (r.targetHidden() == null) continue;
            var rows = out.computeIfAbsent(r.sequenceId(), k -> new HashMap<>());
            for (int row = 0; row < r.hiddenRows(hiddenSize); row++) {
                rows.put(r.targetHiddenFrom() + row,
                        Arrays.copyOfRange(r.targetHidden(), row * hiddenSize, (row + 1) * hiddenSize));
            }
        }
        return out;
    }

    private final class Session implements DraftSession {
        private final AtomicBoolean busy = new AtomicBoolean();
        private volatile boolean isClosed;

        private void enter(String call) {
            if (isClosed) violations.add(call + " after close");
            if (!busy.compareAndSet(false, true)) violations.add("concurrent " + call);
        }

        private void leave() {
            busy.set(false);
        }

        @Override
        public boolean needsTargetHiddenStates() {
            return needsHidden;
        }

        @Override
        public List<Draft> propose(List<DraftRequest> batch) {
            enter("propose");
            try {
                batchSizes.add(batch.size());
                requests.addAll(batch);
                int call = calls.incrementAndGet();
                if (failEvery > 0 && call % failEvery == 0) throw new IllegalStateException("scripted failure");
                List<Draft> drafts = new ArrayList<>(batch.size());
                for (DraftRequest r : batch) drafts.add(r.maxTokens() == 0 ? Draft.NONE : Draft.of(script.apply(r)));
                return drafts;
            } finally {
                leave();
            }
        }

        @Override
        public void release(String sequenceId) {
            enter("release");
            released.incrementAndGet();
            leave();
        }

        @Override
        public void accepted(String sequenceId, int acceptedTokens) {
            enter("accepted");
            leave();
        }

        @Override
        public void close() {
            enter("close");
            isClosed = true;
            closed.incrementAndGet();
            leave();
        }
    }
}
