package dev.kiln.engine.testing;

import dev.kiln.api.engine.GenerationHandle;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.sampling.LogitsProcessor;
import dev.kiln.api.sampling.Sampler;
import dev.kiln.engine.EngineSettings;
import dev.kiln.engine.InferenceEngineCore;
import dev.kiln.sampler.DefaultSampler;
import dev.kiln.sampler.penalties.FrequencyPenalty;
import dev.kiln.sampler.penalties.PresencePenalty;
import dev.kiln.sampler.penalties.RepetitionPenalty;
import java.util.List;

/** An engine over a fixture model with the real sampler and penalties; closing it closes the model too. */
public final class TestEngine implements AutoCloseable {
    private final CausalLanguageModel model;
    private final InferenceEngineCore core;

    private TestEngine(CausalLanguageModel model, InferenceEngineCore core) {
        this.model = model;
        this.core = core;
    }

    /** An engine with the default sampler and the three penalties (repetition first, as ranked). */
    public static TestEngine start(String fixture, EngineSettings settings) {
        return start(fixture, settings, new DefaultSampler(),
                List.of(new RepetitionPenalty(), new FrequencyPenalty(), new PresencePenalty()));
    }

    public static TestEngine start(String fixture, EngineSettings settings, Sampler sampler,
                                   List<LogitsProcessor> processors) {
        CausalLanguageModel model = Fixtures.build(fixture, settings.maxNumBatchedTokens());
        try {
            return new TestEngine(model, new InferenceEngineCore(model, settings, sampler, processors));
        } catch (RuntimeException e) {
            model.close();
            throw e;
        }
    }

    /** An engine over a model the test made (one seen through a test backend, say); the engine closes it. */
    public static TestEngine start(CausalLanguageModel model, EngineSettings settings) {
        try {
            return new TestEngine(model, new InferenceEngineCore(model, settings, new DefaultSampler(),
                    List.of(new RepetitionPenalty(), new FrequencyPenalty(), new PresencePenalty())));
        } catch (RuntimeException e) {
            model.close();
            throw e;
        }
    }

    public InferenceEngineCore core() {
        return core;
    }

    public CausalLanguageModel model() {
        return model;
    }

    /** Submits and returns the collector of the request's events. */
    public Collector submit(GenerationRequest request) {
        Collector c = new Collector();
        core.submit(request, c);
        return c;
    }

    /** Submits with the given listener and returns its handle. */
    public GenerationHandle submit(GenerationRequest request, Collector collector) {
        return core.submit(request, collector);
    }

    /** Waits until the engine has nothing running or waiting (its counters are published after each step). */
    public void awaitIdle() {
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (core.stats().running() + core.stats().waiting() > 0) {
            if (System.nanoTime() > deadline) throw new AssertionError("engine still busy: " + core.stats());
            try {
                Thread.sleep(1);
            } catch (InterruptedException e) {
                throw new AssertionError(e);
            }
        }
    }

    @Override
    public void close() {
        try {
            core.close();
        } finally {
            model.close();
        }
    }
}
