package dev.kiln.engine.speculative;

import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.speculative.Draft;
import dev.kiln.api.speculative.DraftRequest;
import dev.kiln.api.speculative.DraftSession;
import dev.kiln.api.speculative.ProposerStats;
import dev.kiln.api.speculative.SpeculativeProposer;
import dev.kiln.engine.SpeculationSettings;
import dev.kiln.engine.scheduler.Sequence.PendingDraft;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.locks.ReentrantLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The active draft session of one engine and everything that crosses between it and the engine thread.
 *
 * <p>{@link #select} may be called from any thread: it opens the new proposer's session first (which may take a
 * while) without stopping the engine, then swaps it in between two calls of the engine thread and closes the old
 * one. Every call into a session happens under one lock, so after {@code select} returns the old session is never
 * called again: a proposer bundle that is stopping can free its resources safely once its service's unbind
 * returned. Drafts already handed to sequences stay valid (verification needs nothing of the proposer).
 *
 * <p>The engine thread reads the {@link #mode()} at the start of a step, queues notifications
 * ({@link #accepted}, {@link #release}) while it works, and delivers them with its next {@link #propose} (or
 * {@link #flush()} before it idles). A session that throws costs its drafts for that step, never a request.
 */
public final class Speculation implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Speculation.class);

    /**
     * What a step needs to know of the speculation in force when it starts.
     *
     * @param session           which session (0: none)
     * @param needsHiddenStates whether the step must return the target's hidden states
     * @param numTokens         draft tokens per sequence and step
     * @param maxBatch          the most running sequences for which drafting pays
     */
    public record Mode(long session, boolean needsHiddenStates, int numTokens, int maxBatch) {
        static final Mode OFF = new Mode(0, false, 0, 0);

        /** Whether a session is active. */
        public boolean active() {
            return session != 0;
        }

        /** Whether sequences draft in a step whose running batch has {@code running} sequences. */
        public boolean draftsFor(int running) {
            return active() && running <= maxBatch;
        }
    }

    private record Active(SpeculativeProposer proposer, DraftSession session, String name, Mode mode) {}

    private record Notification(String key, long session, int accepted, boolean release) {}

    private final CausalLanguageModel target;
    private final int vocab;
    private final ReentrantLock lock = new ReentrantLock();
    /** Written under the lock; read by the engine thread at each step's start without it. */
    private volatile Active active;
    private volatile String status = "off";
    private boolean closed;
    private long sessions;
    /** Keys of the sequences the active session has seen (under the lock). */
    private final Set<String> seen = new HashSet<>();
    /** Notifications waiting for the next call into the session (engine thread only). */
    private final List<Notification> pending = new ArrayList<>();
    /** Counters by proposer name, written by the engine thread. */
    private final Map<String, Counters> counters = new LinkedHashMap<>();
    private long failures;

    /** @param target the engine's model, which sessions are opened for */
    public Speculation(CausalLanguageModel target) {
        this.target = target;
        this.vocab = target.vocabSize();
    }

    // ---------------------------------------------------------------- any thread

    /**
     * Makes {@code proposer} (or none) the active one with the given settings. The same proposer under the same
     * name keeps its session and only takes the new numbers. A proposer whose session cannot be opened leaves
     * the engine without speculation; {@link #status()} says why.
     */
    public void select(SpeculativeProposer proposer, SpeculationSettings settings) {
        Active current = active;
        if (proposer == null || settings.proposer() == null) {
            swap(null, "off");
            return;
        }
        if (current != null && current.proposer() == proposer && current.name().equals(settings.proposer())) {
            Mode mode = new Mode(current.mode().session(), current.mode().needsHiddenStates(),
                    settings.numSpeculativeTokens(), settings.maxBatch());
            lock.lock();
            try {
                if (active == current) active = new Active(proposer, current.session(), current.name(), mode);
            } finally {
                lock.unlock();
            }
            status = describe(settings);
            return;
        }
        DraftSession session;
        try {
            session = proposer.open(target);
        } catch (RuntimeException | LinkageError e) {
            LOG.error("speculative proposer '{}' cannot draft for this model; speculation is off", settings.proposer(), e);
            swap(null, "off: proposer '" + settings.proposer() + "' failed to open: " + e.getMessage());
            return;
        }
        boolean needsHidden;
        try {
            needsHidden = session.needsTargetHiddenStates();
        } catch (RuntimeException e) {
            closeQuietly(session, settings.proposer());
            swap(null, "off: proposer '" + settings.proposer() + "' failed: " + e.getMessage());
            return;
        }
        swap(new Active(proposer, session, settings.proposer(),
                new Mode(0, needsHidden, settings.numSpeculativeTokens(), settings.maxBatch())), describe(settings));
    }

    private static String describe(SpeculationSettings settings) {
        return settings.proposer() + ", " + settings.numSpeculativeTokens() + " tokens, batches up to "
                + settings.maxBatch();
    }

    private void swap(Active next, String newStatus) {
        Active old;
        lock.lock();
        try {
            if (closed) {
                if (next != null) closeQuietly(next.session(), next.name());
                return;
            }
            old = active;
            if (next != null) {
                Mode m = next.mode();
                next = new Active(next.proposer(), next.session(), next.name(),
                        new Mode(++sessions, m.needsHiddenStates(), m.numTokens(), m.maxBatch()));
            }
            active = next;
            seen.clear();
            status = newStatus;
            // Closed under the lock: the engine thread may be about to call it, and a closed session must not be.
            if (old != null) closeQuietly(old.session(), old.name());
        } finally {
            lock.unlock();
        }
        if (old != null || next != null) {
            LOG.info("speculative decoding: {}", newStatus);
        }
    }

    /** What is in force: the proposer and its settings, "off", or why it is off. */
    public String status() {
        return status;
    }

    /** The name of the active proposer, or null. */
    public String activeName() {
        Active a = active;
        return a == null ? null : a.name();
    }

    /** What each proposer achieved so far, in the order they were first used. */
    public List<ProposerStats> stats() {
        synchronized (counters) {
            return counters.values().stream().map(Counters::snapshot).toList();
        }
    }

    /** Closes the active session; later selections are refused (their sessions closed at once). */
    @Override
    public void close() {
        lock.lock();
        try {
            if (closed) return;
            Active old = active;
            active = null;
            closed = true;
            status = "off";
            if (old != null) closeQuietly(old.session(), old.name());
        } finally {
            lock.unlock();
        }
    }

    // ---------------------------------------------------------------- engine thread

    /** The speculation in force now. */
    public Mode mode() {
        Active a = active;
        return a == null ? Mode.OFF : a.mode();
    }

    /** Records a verification: {@code accepted} of the {@code drafted} tokens of a draft were accepted. */
    public void verified(PendingDraft draft, int drafted, int accepted) {
        synchronized (counters) {
            counters.computeIfAbsent(draft.proposer(), Counters::new).add(drafted, accepted);
        }
    }

    /** Queues telling the session that drafted it how many tokens of a sequence's draft were accepted. */
    public void accepted(String key, PendingDraft draft, int accepted) {
        pending.add(new Notification(key, draft.session(), accepted, false));
    }

    /** Queues telling the active session to forget a sequence. */
    public void release(String key) {
        if (active != null) pending.add(new Notification(key, 0, 0, true));
    }

    /** Delivers the queued notifications to the active session. */
    public void flush() {
        if (pending.isEmpty()) return;
        lock.lock();
        try {
            deliver(active);
        } finally {
            lock.unlock();
        }
    }

    /**
     * Hands the requests to the active session, after the queued notifications, and returns one draft per request
     * ({@code null} where there is none, and for requests that only report).
     */
    public List<PendingDraft> propose(List<DraftRequest> requests) {
        PendingDraft[] drafts = new PendingDraft[requests.size()];
        lock.lock();
        try {
            Active a = active;
            deliver(a);
            if (a == null || requests.isEmpty()) return Arrays.asList(drafts);
            for (DraftRequest r : requests) seen.add(r.sequenceId());
            List<Draft> proposed;
            try {
                proposed = a.session().propose(requests);
            } catch (RuntimeException | LinkageError e) {
                failed(a, "propose", e);
                return Arrays.asList(drafts);
            }
            if (proposed == null || proposed.size() != requests.size()) {
                failed(a, "propose", new IllegalStateException("returned " + (proposed == null ? "null" : proposed.size())
                        + " drafts for " + requests.size() + " requests"));
                return Arrays.asList(drafts);
            }
            for (int i = 0; i < drafts.length; i++) {
                drafts[i] = checked(proposed.get(i), requests.get(i).maxTokens(), a);
            }
            return Arrays.asList(drafts);
        } finally {
            lock.unlock();
        }
    }

    /** The usable part of a draft: at most {@code max} tokens, up to the first one outside the vocabulary. */
    private PendingDraft checked(Draft draft, int max, Active a) {
        if (draft == null || max == 0) return null;
        int[] tokens = draft.tokens();
        int n = Math.min(tokens.length, max);
        for (int j = 0; j < n; j++) {
            if (tokens[j] < 0 || tokens[j] >= vocab) {
                n = j;
                break;
            }
            float[][] q = draft.probabilities();
            if (q != null && (q[j] == null || q[j].length < vocab)) {
                n = j;
                break;
            }
        }
        if (n == 0) return null;
        float[][] q = draft.probabilities() == null ? null : Arrays.copyOf(draft.probabilities(), n);
        return new PendingDraft(Arrays.copyOf(tokens, n), q, a.name(), a.mode().session());
    }

    private void deliver(Active a) {
        if (pending.isEmpty()) return;
        if (a == null) {
            pending.clear();
            return;
        }
        try {
            for (Notification n : pending) {
                if (n.release()) {
                    if (seen.remove(n.key())) a.session().release(n.key());
                } else if (n.session() == a.mode().session()) {
                    a.session().accepted(n.key(), n.accepted());
                }
            }
        } catch (RuntimeException | LinkageError e) {
            failed(a, "a notification", e);
        } finally {
            pending.clear();
        }
    }

    /** Logs a session's failure: the first with its stack trace, later ones counted. */
    private void failed(Active a, String call, Throwable e) {
        if (failures++ == 0) {
            LOG.warn("speculative proposer '{}' failed in {}; its sequences decode without drafts this step", a.name(),
                    call, e);
        } else {
            LOG.debug("speculative proposer '{}' failed in {} ({} failures)", a.name(), call, failures, e);
        }
    }

    private static void closeQuietly(DraftSession session, String name) {
        try {
            session.close();
        } catch (RuntimeException | LinkageError e) {
            LOG.warn("closing the draft session of proposer '{}' failed", name, e);
        }
    }

    /** One proposer's counters. */
    private static final class Counters {
        private final String name;
        private long drafts;
        private long draftTokens;
        private long acceptedTokens;

        Counters(String name) {
            this.name = name;
        }

        void add(int drafted, int accepted) {
            drafts++;
            draftTokens += drafted;
            acceptedTokens += accepted;
        }

        ProposerStats snapshot() {
            return new ProposerStats(name, drafts, draftTokens, acceptedTokens);
        }
    }
}
