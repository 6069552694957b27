package dev.kiln.engine;

import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.PendingTokens;
import dev.kiln.api.engine.EngineOverloadedException;
import dev.kiln.api.engine.EngineStats;
import dev.kiln.api.engine.FinishReason;
import dev.kiln.api.engine.GenerationHandle;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.InferenceEngine;
import dev.kiln.api.engine.ModelDescription;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.api.engine.TokenListener;
import dev.kiln.api.engine.TokenLogprobs;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.api.model.ForwardResult;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.api.sampling.LogitsProcessor;
import dev.kiln.api.sampling.Sampler;
import dev.kiln.api.speculative.DraftRequest;
import dev.kiln.api.speculative.ProposerStats;
import dev.kiln.api.speculative.SpeculativeProposer;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.engine.kv.BlockManager;
import dev.kiln.engine.sampling.Logprobs;
import dev.kiln.engine.sampling.TokenSelector;
import dev.kiln.engine.scheduler.Scheduler;
import dev.kiln.engine.scheduler.Sequence;
import dev.kiln.engine.scheduler.Sequence.PendingDraft;
import dev.kiln.engine.speculative.Speculation;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The inference engine over one loaded model (vLLM's engine core): a paged KV cache with prefix caching, a
 * continuous-batching scheduler with chunked prefill and preemption by recomputation, and one batched forward per
 * step over every scheduled sequence.
 *
 * <p>One engine thread runs steps while there is work and parks otherwise. {@link #submit} and
 * {@link GenerationHandle#cancel()} may be called from any thread; they queue work for the engine thread.
 * <b>Listeners are called on the engine thread</b>, between steps: they must return quickly and never block (hand
 * events to an I/O thread), or every request waits. A listener that throws fails its own request only.
 *
 * <p>Speculative decoding: with a proposer selected ({@link #setSpeculation}), every decoding sequence gets up to k
 * draft tokens after each step, and the next step verifies them in the same batched forward as everything else:
 * the sequence's last token and its draft are k + 1 query tokens of that sequence (no extra sequences in the
 * batch), whose logits decide, token after token, which draft tokens are accepted (greedy: exactly those plain
 * decoding would choose; sampling: by rejection sampling, which keeps the target's distribution). The accepted
 * tokens and the target's next token go out in one event; the KV slots of rejected tokens are given back. Steps
 * whose running batch is larger than the configured maximum do not draft. Sequences still prefilling do not draft.
 *
 * <p>Overlapped steps: on a backend that {@linkplain ComputeBackend#overlapsSteps overlaps steps} (a GPU), a step
 * whose tokens are chosen on the device leaves them pending, and the next step is scheduled and queued before they
 * are read back: each sequence waiting for its token gets a {@linkplain PendingTokens#placeholder placeholder} that
 * the device resolves when it embeds the next step's tokens. Only then does the engine wait for the first step's
 * tokens, report them and take back what they end (a stop token ends a sequence whose next step is already queued:
 * that step's row for it is dropped). The GPU thus never waits for the host between steps. Steps that draft, or
 * whose requests need the logits (log-probabilities, logits processors, minimum lengths), are completed before the
 * next one is scheduled, as on the CPU.
 *
 * <p>The sampler, the logits processors and the proposer can be replaced at any time ({@link #setSampler},
 * {@link #setLogitsProcessors}, {@link #setSpeculation}); a replacement applies from the next step, requests in
 * flight continue, and greedy outputs do not change.
 *
 * <p>The engine does not own the model: {@link #close()} stops the thread, fails what is in flight and frees the
 * KV cache; the caller closes the model afterwards.
 */
public final class InferenceEngineCore implements InferenceEngine, AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(InferenceEngineCore.class);
    private static final int[] NO_TOKENS = new int[0];

    private final CausalLanguageModel model;
    private final KvCache cache;
    private final BlockManager blocks;
    private final Scheduler scheduler;
    private final TokenSelector selector;
    private final ModelDescription description;
    private final int vocab;
    private final int blockSize;
    private final int maxModelLen;
    private final int maxWaiting;
    /** Most tokens one forward step may hold (the scheduler's budget, within the model's workspace). */
    private final int stepTokens;
    private final Speculation speculation;

    private volatile Sampler sampler;
    private volatile List<LogitsProcessor> processors;
    /** The model's end-of-sequence tokens (config.json's eos_token_id). */
    private final int[] endOfSequence;

    private final ConcurrentLinkedQueue<Sequence> inbox = new ConcurrentLinkedQueue<>();
    private final ConcurrentLinkedQueue<Sequence> cancellations = new ConcurrentLinkedQueue<>();
    private final AtomicInteger inboxSize = new AtomicInteger();
    /** The step's greedy choices per logit row when the backend computed them instead of returning logits. */
    private int[] deviceChoices;
    /** The step whose tokens are still being chosen on the device, or null. */
    private InFlight inFlight;
    /** Whether steps overlap on this model and backend ({@code -Dkiln.engine.overlapSteps=false} turns it off). */
    private final boolean overlapSteps;
    private final Object submitLock = new Object();
    private long arrivals;
    private boolean closed;
    private volatile String stopReason;
    private final Thread thread;

    // Statistics: written by the engine thread only, read by anyone.
    private volatile int running;
    private volatile int waiting;
    private volatile long promptTokens;
    private volatile long generationTokens;
    private volatile long requestsFinished;
    private volatile long prefixQueries;
    private volatile long prefixHits;
    private volatile long preemptions;
    private volatile long draftTokensProposed;
    private volatile long draftTokensAccepted;

    /**
     * Allocates the KV cache and starts the engine thread.
     *
     * @param model      the loaded model (the caller keeps ownership)
     * @param settings   cache and batch sizes
     * @param sampler    the sampler, or null to serve greedy requests only until one is set
     * @param processors logits processors in the order they apply
     * @throws IllegalArgumentException when the settings do not fit the model (a cache too small for one block, a
     *                                  context longer than the cache or the model's positions)
     */
    public InferenceEngineCore(CausalLanguageModel model, EngineSettings settings, Sampler sampler,
                               List<LogitsProcessor> processors) {
        this.model = Objects.requireNonNull(model, "model");
        this.sampler = sampler;
        this.processors = List.copyOf(processors);
        this.vocab = model.vocabSize();
        this.blockSize = settings.blockSize();
        this.maxWaiting = settings.maxWaiting();

        ModelConfig config = model.config();
        int positions = config.maxPositionEmbeddings();
        KvCacheSpec spec = model.kvCacheSpec();
        long bytesPerBlock = Math.multiplyExact(spec.bytesPerToken(), (long) blockSize);
        long memory = settings.kvCacheMemory() > 0 ? settings.kvCacheMemory()
                : automaticCacheMemory(spec, settings.maxModelLen() > 0 ? settings.maxModelLen() : positions,
                        settings.maxNumSeqs(), bytesPerBlock, model.backend().device(), model.weightBytes());
        long numBlocks = memory / bytesPerBlock;
        if (numBlocks < 1) {
            throw new IllegalArgumentException("kv-cache-memory of " + memory + " bytes holds no block of " + blockSize
                    + " tokens (" + bytesPerBlock + " bytes each for this model)");
        }
        if (numBlocks * blockSize > Integer.MAX_VALUE) numBlocks = Integer.MAX_VALUE / blockSize;
        int capacity = (int) numBlocks * blockSize;
        if (settings.maxModelLen() > capacity) {
            throw new IllegalArgumentException("max-model-len " + settings.maxModelLen() + " exceeds the " + capacity
                    + " tokens the KV cache holds (kv-cache-memory " + memory + " bytes)");
        }
        if (settings.maxModelLen() > positions) {
            throw new IllegalArgumentException("max-model-len " + settings.maxModelLen()
                    + " exceeds the model's max_position_embeddings " + positions);
        }
        this.maxModelLen = settings.maxModelLen() > 0 ? settings.maxModelLen() : Math.min(positions, capacity);

        int budget = settings.maxNumBatchedTokens();
        if (budget > model.maxBatchTokens()) {
            LOG.warn("max-num-batched-tokens {} exceeds the model's workspace of {} tokens: using {}", budget,
                    model.maxBatchTokens(), model.maxBatchTokens());
            budget = model.maxBatchTokens();
        }

        this.blocks = new BlockManager((int) numBlocks, blockSize);
        this.scheduler = new Scheduler(blocks, settings.maxNumSeqs(), budget);
        this.stepTokens = budget;
        this.endOfSequence = endOfSequenceTokens(config);
        this.selector = new TokenSelector(vocab, endOfSequence);
        this.description = describe(model, settings, maxModelLen);
        this.cache = model.allocateKvCache((int) numBlocks, blockSize);
        this.speculation = new Speculation(model);
        this.overlapSteps = model.acceptsPendingTokens() && model.backend().overlapsSteps()
                && Boolean.parseBoolean(System.getProperty("kiln.engine.overlapSteps", "true"));
        LOG.info("engine for {}: {} KV blocks of {} tokens ({} MiB, {}), context {} tokens, {} sequences, {} tokens per step",
                description.id(), numBlocks, blockSize, cache.bytes() >> 20, spec.dtype(), maxModelLen,
                settings.maxNumSeqs(), budget);

        this.thread = new Thread(this::run, "kiln-engine");
        thread.setDaemon(true);
        thread.start();
    }

    /**
     * Default cache size: what {@code sequences} full contexts need, at least one block, and at most 1 GiB on the
     * CPU (host memory is shared with everything else). A GPU's memory is the engine's: there the cap is
     * {@value #DEVICE_MEMORY_SHARE} of the device's memory less the weights and {@value #DEVICE_HEADROOM_GIB} GiB for
     * activations and scratch, so that `kiln serve --backend cuda` batches as many sequences as the device holds.
     */
    static long automaticCacheMemory(KvCacheSpec spec, int contextLength, int sequences, long bytesPerBlock,
                                     dev.kiln.api.backend.DeviceInfo device, long weightBytes) {
        long full;
        try {
            full = Math.multiplyExact(Math.multiplyExact(spec.bytesPerToken(), (long) contextLength), (long) sequences);
        } catch (ArithmeticException overflow) {
            full = Long.MAX_VALUE;
        }
        long cap = EngineSettings.DEFAULT_KV_CACHE_MEMORY;
        if (device != null && !"cpu".equals(device.backend()) && device.memoryBytes() > 0) {
            long share = (long) (device.memoryBytes() * DEVICE_MEMORY_SHARE) - weightBytes - (DEVICE_HEADROOM_GIB << 30);
            cap = Math.max(cap, share);
        }
        return Math.max(bytesPerBlock, Math.min(cap, full));
    }

    /** Share of a GPU's memory the weights, the KV cache and the scratch may take together. */
    static final double DEVICE_MEMORY_SHARE = 0.85;
    /** GiB of a GPU's memory kept for activations, cuBLAS and the sampler's scratch. */
    static final long DEVICE_HEADROOM_GIB = 2;

    /** The config's {@code eos_token_id}: a number, a list of numbers, or absent. */
    static int[] endOfSequenceTokens(ModelConfig config) {
        Object eos = config.get("eos_token_id").orElse(null);
        if (eos instanceof Number n) return new int[] {n.intValue()};
        if (eos instanceof List<?> list) {
            return list.stream().filter(Number.class::isInstance).mapToInt(v -> ((Number) v).intValue()).toArray();
        }
        return NO_TOKENS;
    }

    private static ModelDescription describe(CausalLanguageModel model, EngineSettings settings, int contextLength) {
        ModelConfig config = model.config();
        Path folder = config.source() == null ? null : config.source().toAbsolutePath().getParent();
        String location = settings.location() != null ? settings.location() : folder == null ? "" : folder.toString();
        String id = settings.servedModelName() != null && !settings.servedModelName().isBlank()
                ? settings.servedModelName()
                : folder != null && folder.getFileName() != null ? folder.getFileName().toString() : model.architecture();
        String format = config.getObject("quantization_config")
                .map(q -> String.valueOf(q.getOrDefault("quant_method", "quantized")))
                .or(() -> config.getString("torch_dtype"))
                .or(() -> config.getString("dtype"))
                .orElse("unknown");
        return new ModelDescription(id, model.architecture(), location, format, model.weightBytes(), contextLength);
    }

    // ---------------------------------------------------------------- public API

    @Override
    public GenerationHandle submit(GenerationRequest request, TokenListener listener) {
        Objects.requireNonNull(request, "request");
        Objects.requireNonNull(listener, "listener");
        int prompt = request.promptTokens().length;
        if (prompt > maxModelLen || (prompt == maxModelLen && request.maxTokens() > 0)) {
            throw new IllegalArgumentException("the prompt of " + prompt + " tokens leaves no room to generate within the "
                    + "context of " + maxModelLen + " tokens");
        }
        for (int t : request.promptTokens()) {
            if (t < 0 || t >= vocab) {
                throw new IllegalArgumentException("prompt token " + t + " is outside the vocabulary of " + vocab);
            }
        }
        if (!request.sampling().isGreedy() && sampler == null) {
            throw new IllegalStateException("no sampler service is bound: only greedy requests can be served");
        }
        Sequence sequence;
        synchronized (submitLock) {
            if (closed) throw new IllegalStateException("the engine is stopped" + (stopReason == null ? "" : ": " + stopReason));
            if (inboxSize.get() + waiting >= maxWaiting) {
                throw new EngineOverloadedException("the engine's waiting queue is full (" + maxWaiting + " requests)");
            }
            sequence = new Sequence(request, listener, arrivals++, endOfSequence);
            inboxSize.incrementAndGet();
            inbox.add(sequence);
        }
        LockSupport.unpark(thread);
        return new Handle(sequence);
    }

    @Override
    public Optional<ModelDescription> model() {
        return Optional.of(description);
    }

    @Override
    public EngineStats stats() {
        return new EngineStats(running, waiting + inboxSize.get(), blocks.usedBlocks(), blocks.numBlocks(),
                prefixQueries, prefixHits, promptTokens, generationTokens, draftTokensProposed, draftTokensAccepted,
                requestsFinished);
    }

    /** The longest sequence (prompt + output) served. */
    public int maxModelLen() {
        return maxModelLen;
    }

    /** Sequences preempted (and later recomputed) so far. */
    public long preemptions() {
        return preemptions;
    }

    /** KV cache blocks in all. */
    public int kvBlocks() {
        return blocks.numBlocks();
    }

    /** Replaces the sampler from the next step on; null serves greedy requests only. */
    public void setSampler(Sampler sampler) {
        this.sampler = sampler;
    }

    /** Replaces the logits processors (in the order they apply) from the next step on. */
    public void setLogitsProcessors(List<LogitsProcessor> processors) {
        this.processors = List.copyOf(processors);
    }

    /**
     * Selects the speculative proposer from the next step on: its draft session is opened for this engine's model
     * on the calling thread (which may take a while; the engine keeps stepping meanwhile), then swapped in; the
     * previous session is closed. After this returns, the previous proposer is never called again. A null
     * proposer, or settings naming none, turns speculation off.
     */
    public void setSpeculation(SpeculativeProposer proposer, SpeculationSettings settings) {
        speculation.select(proposer, settings);
    }

    /** The speculative decoding in force ("off", the proposer and its settings, or why it could not start). */
    public String speculationStatus() {
        return speculation.status();
    }

    /** What each proposer used so far achieved: drafts, drafted and accepted tokens. */
    public List<ProposerStats> speculativeStats() {
        return speculation.stats();
    }

    /** Stops the engine: requests in flight fail with "the engine was stopped"; the KV cache is freed. */
    @Override
    public void close() {
        close("the engine was stopped");
    }

    /**
     * Stops the engine thread; every request still in flight receives {@code onError} with the reason. Waits for
     * the thread unless called from it (from a listener).
     */
    public void close(String reason) {
        synchronized (submitLock) {
            if (closed) return;
            closed = true;
            stopReason = reason;
        }
        LockSupport.unpark(thread);
        if (Thread.currentThread() == thread) return;
        boolean interrupted = false;
        while (thread.isAlive()) {
            try {
                thread.join();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
    }

    // ---------------------------------------------------------------- engine thread

    private void run() {
        try {
            while (!isClosed()) {
                admitSubmissions();
                processCancellations();
                if (scheduler.hasWork()) {
                    try {
                        step();
                    } catch (RuntimeException | Error e) {
                        LOG.error("engine step failed; failing the running requests", e);
                        for (Sequence s : scheduler.running()) fail(s, e);
                        if (inFlight != null) {
                            for (Scheduler.Entry entry : inFlight.plan()) fail(entry.sequence(), e);
                            inFlight = null;
                        }
                    }
                } else if (inFlight != null) {
                    completeInFlight(); // its sequences were all cancelled
                } else if (inbox.isEmpty() && cancellations.isEmpty() && !isClosed()) {
                    speculation.flush(); // finished sequences' proposer state is freed before idling
                    // What the cancellations just did must show before idling: stale counts would report waiting
                    // requests (and hold their places against the queue's limit) until the next request woke the engine.
                    publishCounts();
                    LockSupport.park(this);
                    Thread.interrupted(); // only close() stops the engine; a stray interrupt must not make park spin
                }
                publishCounts();
            }
        } finally {
            shutDown();
        }
    }

    private boolean isClosed() {
        synchronized (submitLock) {
            return closed;
        }
    }

    private void shutDown() {
        synchronized (submitLock) {
            if (!closed) { // the loop died of an unexpected error: refuse new work from now on
                closed = true;
                stopReason = "the engine thread stopped unexpectedly";
            }
        }
        IllegalStateException stopped = new IllegalStateException(stopReason == null ? "the engine was stopped" : stopReason);
        inFlight = null; // its sequences are among those failed below
        admitSubmissions();
        for (Sequence s : scheduler.all()) fail(s, stopped);
        publishCounts();
        speculation.close();
        cache.close();
    }

    private void admitSubmissions() {
        int drained = 0;
        Sequence s;
        while ((s = inbox.poll()) != null) {
            drained++;
            if (!s.isDone()) scheduler.enqueue(s);
        }
        if (drained > 0) {
            // Under the submission lock: a submitter's check then sees the drained requests counted once, still in the
            // inbox or already waiting, never both (a transient double count refused requests as overload while the
            // queue had room). The waiting count still moves first, so a reader without the lock never under-counts.
            synchronized (submitLock) {
                waiting = scheduler.waitingCount();
                inboxSize.addAndGet(-drained);
            }
        }
    }

    private void processCancellations() {
        Sequence s;
        while ((s = cancellations.poll()) != null) {
            if (!s.isDone()) finish(s, FinishReason.CANCELLED, NO_TOKENS, null);
        }
    }

    /** Publishes the scheduler's counters; the queue lengths last, so a reader who sees them idle sees the rest. */
    private void publishCounts() {
        prefixQueries = scheduler.prefixQueries();
        prefixHits = scheduler.prefixHits();
        preemptions = scheduler.preemptions();
        waiting = scheduler.waitingCount();
        running = scheduler.runningCount();
    }

    /**
     * One engine step: schedule, one batched forward, then choose tokens (verifying drafts) and report for every
     * sequence that needs it, and draft for the next step. When the tokens are chosen on a device that overlaps
     * steps, they are left pending: the step ahead of this one is completed, and this one waits in {@link #inFlight}
     * until the next step is queued.
     */
    private void step() {
        List<Scheduler.Entry> plan = scheduler.schedule();
        publishCounts(); // admissions and preemptions show in stats (and in submit's queue bound) during the step
        if (plan.isEmpty()) {
            if (inFlight != null) {
                // Its sequences may hold the blocks the queue waits for (those it takes to their length limit were
                // not scheduled again): complete it and schedule anew before concluding that nothing fits.
                completeInFlight();
                return;
            }
            refuseUnschedulable();
            return;
        }
        Speculation.Mode mode = speculation.mode();
        boolean drafting = mode.draftsFor(scheduler.runningCount());
        StepBatch step = StepBatch.build(plan, blockSize, drafting && mode.needsHiddenStates(), paddedDecodeSize(plan),
                inFlight == null ? null : inFlight.tokens());
        float[] logits = null;
        float[] hidden;
        Sampler currentSampler = sampler;
        List<LogitsProcessor> currentProcessors = processors;
        PendingTokens chosen = null;
        boolean leavePending = overlapSteps && !drafting;
        try {
            ForwardResult result = model.forward(step.batch(), cache);
            if (step.logitRows() > 0) {
                chosen = chooseOnBackend(plan, step, result.logits(), currentSampler, currentProcessors, leavePending);
                if (chosen == null) logits = model.backend().read(result.logits());
            }
            hidden = step.batch().returnHiddenStates() && step.logitRows() > 0 && result.hiddenStates() != null
                    ? model.backend().read(result.hiddenStates()) : null;
        } catch (RuntimeException e) {
            LOG.error("forward step over {} sequences failed", plan.size(), e);
            for (Scheduler.Entry entry : plan) fail(entry.sequence(), e);
            completeInFlight();
            return;
        }
        completeInFlight(); // the step ahead: its tokens were being chosen while this step was queued
        if (chosen != null && leavePending) {
            holdPending(plan, step, chosen, currentSampler, currentProcessors);
            return;
        }
        deviceChoices = chosen == null ? null : chosen.await();
        List<DraftRequest> requests = new ArrayList<>();
        List<Sequence> requesters = new ArrayList<>();
        for (int i = 0; i < plan.size(); i++) {
            Sequence s = plan.get(i).sequence();
            if (s.isDone()) continue;
            int start = s.computed();
            int validRows;
            try {
                validRows = advance(s, step, i, logits, currentSampler, currentProcessors);
            } catch (RuntimeException e) {
                LOG.warn("request {} failed while choosing its next token", s.id(), e);
                fail(s, e);
                continue;
            }
            if (s.isDone() || !drafting) continue;
            // Only sequences whose prompt is computed draft: the first draft follows the first generated token.
            int wanted = s.uncomputed() == 1 && s.computed() >= s.promptLength() ? draftBudget(s, mode.numTokens()) : 0;
            float[] states = hidden == null ? null : step.hiddenRows(hidden, i, validRows, model.hiddenSize());
            if (wanted > 0 || states != null) {
                requests.add(new DraftRequest(s.draftKey(), Arrays.copyOf(s.tokens(), s.length()),
                        s.request().reference(), states, start, wanted));
                requesters.add(s);
            }
        }
        deviceChoices = null;
        if (drafting) {
            List<PendingDraft> drafts = speculation.propose(requests);
            for (int i = 0; i < requesters.size(); i++) requesters.get(i).setDraft(drafts.get(i));
        } else {
            speculation.flush();
        }
    }

    /**
     * A step whose tokens are being chosen on the device.
     *
     * @param decides     which sequences of the plan get a token from it
     * @param placeholder which of those hold a placeholder for it as their last token (all but those the token
     *                    takes to a length limit, which must not be scheduled again)
     */
    private record InFlight(List<Scheduler.Entry> plan, StepBatch step, PendingTokens tokens, boolean[] decides,
                            boolean[] placeholder, Sampler sampler, List<LogitsProcessor> processors) {}

    /**
     * Takes the sequences of a step whose tokens are pending past it, as {@link #advance} would, except that a
     * sequence due a token gets a placeholder for it, so that the scheduler gives it its next step at once. (Such a
     * step gathers no prompt log-probabilities: {@link #chooseOnBackend} reads the logits for those.)
     */
    private void holdPending(List<Scheduler.Entry> plan, StepBatch step, PendingTokens chosen, Sampler sampler,
                             List<LogitsProcessor> processors) {
        boolean[] decides = new boolean[plan.size()];
        boolean[] placeholder = new boolean[plan.size()];
        for (int i = 0; i < plan.size(); i++) {
            Sequence s = plan.get(i).sequence();
            if (s.isDone() || !recordComputed(s, step, i, null)) continue;
            decides[i] = true;
            if (s.outputLength() + 1 < s.request().maxTokens() && s.length() + 1 < maxModelLen) {
                s.append(PendingTokens.placeholder(step.sampleRow(i)));
                placeholder[i] = true;
            }
        }
        inFlight = new InFlight(plan, step, chosen, decides, placeholder, sampler, processors);
        speculation.flush();
    }

    /**
     * Waits for the tokens of the step in flight and decides with them as a step read back at once would: each
     * placeholder gives way to its token, or to the end of its sequence.
     */
    private void completeInFlight() {
        InFlight f = inFlight;
        if (f == null) return;
        inFlight = null;
        try {
            deviceChoices = f.tokens().await();
        } catch (RuntimeException e) {
            LOG.error("choosing the tokens of a step over {} sequences failed", f.plan().size(), e);
            for (Scheduler.Entry entry : f.plan()) fail(entry.sequence(), e);
            return;
        }
        try {
            for (int i = 0; i < f.plan().size(); i++) {
                Sequence s = f.plan().get(i).sequence();
                if (s.isDone() || !f.decides()[i]) continue;
                if (f.placeholder()[i]) s.dropPlaceholder();
                try {
                    report(s, decide(s, null, 0, f.step().sampleRow(i), null, f.sampler(), f.processors()));
                } catch (RuntimeException e) {
                    LOG.warn("request {} failed while choosing its next token", s.id(), e);
                    fail(s, e);
                }
            }
        } finally {
            deviceChoices = null;
        }
    }

    /**
     * The step's tokens chosen where the logits are (left pending when asked), or null when some request needs the
     * logits themselves. Greedy
     * steps take {@link dev.kiln.api.backend.ComputeBackend#argmaxRows}; steps whose sampled requests use only
     * temperature, top-k, top-p and min-p, with a sampler that draws like the backend, take
     * {@link dev.kiln.api.backend.ComputeBackend#sampleRows} with one uniform number from each request's random
     * stream, as the sampler would consume it; only on backends that do this where the logits are
     * ({@link dev.kiln.api.backend.ComputeBackend#choosesTokensOnDevice}). A GPU then sends back one int per row: at
     * batch 32 the logits are 19 MB per step to copy and scan. Log-probabilities (of the output or the prompt), stop
     * tokens masked for a minimum length, logits processors and drafts of sampled requests need the logits.
     */
    private PendingTokens chooseOnBackend(List<Scheduler.Entry> plan, StepBatch step, Tensor logits, Sampler sampler,
                                          List<LogitsProcessor> processors, boolean leavePending) {
        ComputeBackend backend = model.backend();
        if (!backend.choosesTokensOnDevice()) return null;
        boolean greedyOnly = true;
        for (int i = 0; i < plan.size(); i++) {
            Sequence s = plan.get(i).sequence();
            var params = s.params();
            if (params.logprobs() > 0 || s.promptLogprobs() != null || s.outputLength() < s.request().minTokens()) {
                return null;
            }
            for (LogitsProcessor processor : processors) {
                if (processor.appliesTo(s)) return null;
            }
            for (LogitsProcessor processor : s.request().processors()) {
                if (processor.appliesTo(s)) return null;
            }
            if (!params.isGreedy()) {
                if (sampler == null || !sampler.drawsLikeBackendSampling() || step.draftTokens(i) > 0) return null;
                greedyOnly = false;
            }
        }
        if (greedyOnly) return leavePending ? backend.argmaxRowsPending(logits) : PendingTokens.of(backend.argmaxRows(logits));
        int rows = step.logitRows();
        float[] params = new float[4 * rows]; // temperature 0 (the largest logit) for every row not drawn
        double[] uniforms = new double[rows];
        for (int i = 0; i < plan.size(); i++) {
            Sequence s = plan.get(i).sequence();
            int row = step.sampleRow(i);
            var p = s.params();
            if (row < 0 || s.isDone() || p.isGreedy()) continue;
            params[4 * row] = (float) p.temperature();
            params[4 * row + 1] = p.topK();
            params[4 * row + 2] = (float) p.topP();
            params[4 * row + 3] = (float) p.minP();
            uniforms[row] = s.random().nextDouble();
        }
        return leavePending ? backend.sampleRowsPending(logits, params, uniforms)
                : PendingTokens.of(backend.sampleRows(logits, params, uniforms));
    }

    /**
     * Takes one sequence past the step: records what was computed, gathers prompt log-probabilities, and once the
     * sequence has caught up with its tokens chooses the next ones (verifying its draft). Returns how many of the
     * sequence's query tokens now have valid keys and values.
     */
    private int advance(Sequence s, StepBatch step, int i, float[] logits, Sampler sampler,
                        List<LogitsProcessor> processors) {
        int drafted = step.draftTokens(i);
        int queried = step.queryTokens(i);
        if (drafted > 0) return verify(s, step, i, logits, sampler, processors);
        if (recordComputed(s, step, i, logits)) report(s, decide(s, null, 0, step.sampleRow(i), logits, sampler, processors));
        return queried;
    }

    /**
     * Records what a step without a draft computed for a sequence (its query tokens, full blocks for the prefix
     * cache, prompt log-probabilities) and returns whether the sequence is now due a token: false while its prompt
     * has chunks to come, and for a request of no output tokens, which this finishes.
     */
    private boolean recordComputed(Sequence s, StepBatch step, int i, float[] logits) {
        int before = s.computed();
        s.setDraft(null); // a draft the scheduler had no room for is stale after this step
        s.advance(step.queryTokens(i));
        blocks.registerFullBlocks(s.blocks(), s.tokens(), s.computed());
        promptTokens += Math.max(0, Math.min(s.computed(), s.promptLength()) - before);
        collectPromptLogprobs(s, step, i, logits);
        if (s.uncomputed() > 0) return false; // prompt not finished: more chunks to come
        if (s.request().maxTokens() == 0) {
            finish(s, FinishReason.LENGTH, NO_TOKENS, null);
            return false;
        }
        return true;
    }

    /**
     * Verifies the sequence's draft against its rows, appends what was decided, and gives back the KV slots of
     * the rejected draft tokens. Returns the query tokens whose keys and values stay: the last token and the
     * accepted draft tokens.
     */
    private int verify(Sequence s, StepBatch step, int i, float[] logits, Sampler sampler,
                       List<LogitsProcessor> processors) {
        PendingDraft draft = s.draft();
        int drafted = step.draftTokens(i);
        int before = s.computed();
        s.setDraft(null);
        Decision decision = decide(s, draft, drafted, step.sampleRow(i), logits, sampler, processors);
        int accepted = decision.accepted();
        speculation.verified(draft, drafted, accepted);
        speculation.accepted(s.draftKey(), draft, accepted);
        draftTokensProposed += drafted;
        draftTokensAccepted += accepted;
        if (decision.finish() == null) {
            s.advance(1 + accepted);
            promptTokens += Math.max(0, Math.min(s.computed(), s.promptLength()) - before);
            blocks.truncate(s.blocks(), s.computed());
            blocks.registerFullBlocks(s.blocks(), s.tokens(), s.computed());
        }
        report(s, decision);
        return 1 + accepted;
    }

    /**
     * What one step decided for a sequence: its new tokens (and their log-probabilities when asked), why it
     * finished (or null), and how many draft tokens were accepted.
     */
    private record Decision(int[] tokens, List<TokenLogprobs> logprobs, FinishReason finish, int accepted) {}

    /**
     * Chooses the sequence's next tokens from its logits rows {@code firstRow, firstRow + 1, ...}: with a draft of
     * {@code drafted} tokens, each row decides whether its draft token is accepted, and the first rejection (or
     * the row after the last draft token) adds the target's own token. Tokens are appended as they are decided,
     * so that penalties and stop masks see them; a stop token (not output) or a length limit ends the sequence.
     */
    private Decision decide(Sequence s, PendingDraft draft, int drafted, int firstRow, float[] logits, Sampler sampler,
                       List<LogitsProcessor> processors) {
        GenerationRequest request = s.request();
        boolean asked = request.sampling().logprobs() > 0;
        int[] tokens = new int[drafted + 1];
        List<TokenLogprobs> logprobs = asked ? new ArrayList<>(drafted + 1) : null;
        int produced = 0;
        int accepted = 0;
        FinishReason finish = null;
        for (int j = 0; j <= drafted; j++) {
            int offset = (firstRow + j) * vocab;
            int token;
            TokenLogprobs lp;
            boolean match = false;
            if (deviceChoices != null) {
                token = deviceChoices[firstRow + j];
                if (token < 0 || token >= vocab) throw new IllegalStateException("the backend chose token " + token);
                lp = null;
                match = j < drafted && token == draft.tokens()[j];
            } else if (j < drafted) {
                float[] q = draft.probabilities() == null ? null : draft.probabilities()[j];
                TokenSelector.Verdict verdict = selector.verify(s, logits, offset, draft.tokens()[j], q, sampler, processors);
                token = verdict.token();
                lp = verdict.logprobs();
                match = verdict.accepted();
            } else {
                TokenSelector.Choice choice = selector.choose(s, logits, offset, sampler, processors);
                token = choice.token();
                lp = choice.logprobs();
            }
            generationTokens++;
            if (match) accepted++;
            if (TokenSelector.contains(request.stopTokenIds(), token)
                    || (!request.ignoreEos() && selector.isEndOfSequence(token))) {
                finish = FinishReason.STOP; // a stop token ends the sequence without being output
                break;
            }
            s.append(token);
            tokens[produced++] = token;
            if (asked) logprobs.add(lp);
            if (s.outputLength() >= request.maxTokens() || s.length() >= maxModelLen) {
                finish = FinishReason.LENGTH;
                break;
            }
            if (!match) break;
        }
        int[] out = produced == tokens.length ? tokens : Arrays.copyOf(tokens, produced);
        return new Decision(out, asked ? List.copyOf(logprobs) : null, finish, accepted);
    }

    /** Sends a decision's tokens in one event, the last one when the sequence finished. */
    private void report(Sequence s, Decision decision) {
        if (decision.finish() != null) {
            finish(s, decision.finish(), decision.tokens(), decision.logprobs());
        } else {
            deliver(s, event(s, decision.tokens(), decision.logprobs(), null));
        }
    }

    /** Draft tokens a decoding sequence may verify next step without passing its length limits. */
    private int draftBudget(Sequence s, int numTokens) {
        int byOutput = s.request().maxTokens() - s.outputLength() - 1;
        int byContext = maxModelLen - s.length() - 1;
        return Math.max(0, Math.min(numTokens, Math.min(byOutput, byContext)));
    }

    private void collectPromptLogprobs(Sequence s, StepBatch step, int i, float[] logits) {
        int rows = step.promptRows(i);
        if (rows == 0) return;
        int first = step.firstPromptPosition(i);
        int row = step.firstPromptRow(i);
        int top = s.request().promptLogprobs();
        double temperature = s.params().temperature();
        for (int k = 0; k < rows; k++) {
            int target = s.tokens()[first + k + 1];
            s.promptLogprobs().add(Logprobs.of(logits, (row + k) * vocab, vocab, target, top, temperature));
        }
    }

    private TokenEvent event(Sequence s, int[] tokens, List<TokenLogprobs> logprobs, FinishReason finish) {
        List<TokenLogprobs> prompt = null;
        if (!s.firstEventSent()) {
            s.markFirstEventSent();
            if (s.promptLogprobs() != null && finish != FinishReason.CANCELLED) prompt = List.copyOf(s.promptLogprobs());
        }
        return new TokenEvent(tokens, logprobs, prompt, finish, s.promptLength(), s.cachedPromptTokens());
    }

    /** Ends the sequence: frees its blocks and sends its terminal event. */
    private void finish(Sequence s, FinishReason reason, int[] tokens, List<TokenLogprobs> logprobs) {
        TokenEvent event = event(s, tokens, logprobs, reason);
        retire(s);
        deliver(s, event);
    }

    /** Ends the sequence with an error: frees its blocks and calls {@code onError}. */
    private void fail(Sequence s, Throwable error) {
        if (s.isDone()) return;
        retire(s);
        try {
            s.listener().onError(error);
        } catch (RuntimeException | Error e) {
            LOG.warn("the listener of request {} threw from onError", s.id(), e);
        }
    }

    private void retire(Sequence s) {
        speculation.release(s.draftKey());
        scheduler.remove(s);
        s.finish();
        requestsFinished++;
    }

    /** Calls the listener; one that throws fails its own request (if the event was not already its last). */
    private void deliver(Sequence s, TokenEvent event) {
        try {
            s.listener().onTokens(event);
        } catch (RuntimeException | Error e) {
            LOG.warn("the listener of request {} threw; failing that request", s.id(), e);
            if (event.finish() == null) fail(s, e);
        }
    }

    /**
     * Nothing could be scheduled although requests wait. With the cache empty this means the queue's head can never
     * fit (submit's checks should prevent it): fail it rather than spin.
     */
    private void refuseUnschedulable() {
        if (scheduler.runningCount() > 0 || blocks.usedBlocks() > 0) return;
        List<Sequence> all = scheduler.all();
        if (all.isEmpty()) return;
        Sequence head = all.getFirst();
        fail(head, new IllegalStateException("request " + head.id() + " of " + head.length()
                + " tokens cannot fit in the KV cache of " + blocks.numBlocks() + " blocks"));
    }

    /** What {@link #submit} returns. */
    private final class Handle implements GenerationHandle {
        private final Sequence sequence;

        Handle(Sequence sequence) {
            this.sequence = sequence;
        }

        @Override
        public String id() {
            return sequence.id();
        }

        @Override
        public void cancel() {
            if (sequence.requestCancel()) {
                cancellations.add(sequence);
                LockSupport.unpark(thread);
            }
        }

        @Override
        public boolean isDone() {
            return sequence.isDone();
        }
    }

    /**
     * The sequences a step of this plan is padded to: the backend's {@link
     * dev.kiln.api.backend.ComputeBackend#decodeBatchSize} for a plain decode step (one new token per sequence, no
     * draft), within the step's token budget; the plan's own size for anything else.
     */
    private int paddedDecodeSize(List<Scheduler.Entry> plan) {
        for (Scheduler.Entry e : plan) {
            if (e.tokens() != 1 || e.draftTokens() != 0) return plan.size();
        }
        return Math.min(Math.max(plan.size(), model.backend().decodeBatchSize(plan.size())), stepTokens);
    }

    /**
     * The forward batch of one step and where each sequence's logit rows are. A sequence's rows are consecutive and
     * cover a consecutive range of its query tokens: rows predicting prompt tokens (for prompt log-probabilities),
     * then the rows to choose from once the sequence has caught up with its tokens (one, or one per draft token
     * plus one). When hidden states are wanted, every query token has a row.
     */
    private record StepBatch(ForwardBatch batch, int logitRows, int[] firstRow, int[] queryTokens,
                             int[] draftTokens, int[] sampleRows, int[] promptRowStart, int[] promptRowCount,
                             int[] promptPositionStart) {
        /**
         * @param padTo sequences the step is padded to with sequences of one token that store nothing (slot -1),
         *              attend to their own first position in the first sequence's first block, and want no logits;
         *              at most {@code plan.size()} means no padding
         * @param pending the tokens the placeholders among the sequences' tokens stand for, or null
         */
        static StepBatch build(List<Scheduler.Entry> plan, int blockSize, boolean hiddenStates, int padTo,
                               PendingTokens pending) {
            int sequences = plan.size();
            int padding = Math.max(0, padTo - sequences);
            int total = 0;
            for (Scheduler.Entry e : plan) total += e.tokens();
            int[] tokens = new int[total + padding];
            int[] positions = new int[total + padding];
            int[] slots = new int[total + padding];
            int[] queryStart = new int[sequences + padding + 1];
            int[] context = new int[sequences + padding];
            int[][] tables = new int[sequences + padding][];
            int[] logitRows = new int[total];
            int[] firstRow = new int[sequences];
            int[] queryTokens = new int[sequences];
            int[] draftTokens = new int[sequences];
            int[] sampleRows = new int[sequences];
            int[] promptRowStart = new int[sequences];
            int[] promptRowCount = new int[sequences];
            int[] promptPositionStart = new int[sequences];
            int row = 0;
            int rows = 0;
            for (int i = 0; i < sequences; i++) {
                Sequence s = plan.get(i).sequence();
                int n = plan.get(i).tokens();
                int drafted = plan.get(i).draftTokens();
                int start = s.computed();
                int[] source = s.tokens();
                int[] draft = drafted > 0 ? s.draft().tokens() : null;
                queryStart[i] = row;
                queryTokens[i] = n;
                draftTokens[i] = drafted;
                context[i] = start + n;
                tables[i] = s.blocks().ids();
                for (int j = 0; j < n; j++) {
                    int position = start + j;
                    tokens[row + j] = position < s.length() ? source[position] : draft[position - s.length()];
                    positions[row + j] = position;
                    slots[row + j] = s.blocks().slot(position, blockSize);
                }
                // The query tokens [lo, hi) that need logits.
                int lo = n;
                int hi = 0;
                int promptFrom = 0;
                int promptTo = 0;
                if (s.gathersPromptLogprobs()) {
                    // Position q predicts prompt token q + 1: rows for q below promptLength - 1 not yet gathered.
                    promptFrom = Math.max(start, s.promptLogprobs().size());
                    promptTo = Math.min(start + n, s.promptLength() - 1);
                    if (promptTo > promptFrom) {
                        lo = promptFrom - start;
                        hi = promptTo - start;
                    }
                }
                int sampleQuery = -1;
                if (start + n - drafted == s.length() && s.request().maxTokens() > 0) {
                    sampleQuery = n - 1 - drafted;
                    lo = Math.min(lo, sampleQuery);
                    hi = n;
                }
                if (hiddenStates) {
                    lo = 0;
                    hi = n;
                }
                if (hi <= lo) {
                    lo = 0;
                    hi = 0;
                }
                firstRow[i] = rows;
                for (int q = lo; q < hi; q++) logitRows[rows + q - lo] = row + q;
                promptRowCount[i] = Math.max(0, promptTo - promptFrom);
                promptRowStart[i] = rows + Math.max(0, promptFrom - start - lo);
                promptPositionStart[i] = promptFrom;
                sampleRows[i] = sampleQuery < 0 ? -1 : rows + sampleQuery - lo;
                rows += hi - lo;
                row += n;
            }
            for (int p = 0; p < padding; p++) {
                // Token 0 at position 0; reading a real block is harmless (its key is never stored, its row never read).
                queryStart[sequences + p] = row;
                slots[row] = -1;
                context[sequences + p] = 1;
                tables[sequences + p] = new int[] {tables[0][0]};
                row++;
            }
            queryStart[sequences + padding] = row;
            var attention = new AttentionMetadata(queryStart, context, tables, slots);
            int[] wanted = rows == total ? logitRows : Arrays.copyOf(logitRows, rows);
            return new StepBatch(new ForwardBatch(tokens, positions, attention, wanted, hiddenStates, pending), rows, firstRow,
                    queryTokens, draftTokens, sampleRows, promptRowStart, promptRowCount,
                    promptPositionStart);
        }

        /** The row to choose sequence i's next token from (the first of its verification rows with a draft). */
        int sampleRow(int i) {
            return sampleRows[i];
        }

        int queryTokens(int i) {
            return queryTokens[i];
        }

        int draftTokens(int i) {
            return draftTokens[i];
        }

        int promptRows(int i) {
            return promptRowCount[i];
        }

        int firstPromptRow(int i) {
            return promptRowStart[i];
        }

        int firstPromptPosition(int i) {
            return promptPositionStart[i];
        }

        /** Hidden states of sequence i's first {@code count} query tokens (every query token has a row then). */
        float[] hiddenRows(float[] hidden, int i, int count, int hiddenSize) {
            int from = firstRow[i] * hiddenSize;
            return Arrays.copyOfRange(hidden, from, from + count * hiddenSize);
        }
    }
}
