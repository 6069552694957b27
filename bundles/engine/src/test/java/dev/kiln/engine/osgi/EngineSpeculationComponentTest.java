package dev.kiln.engine.osgi;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.checkpoint.CheckpointLoader;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.model.ModelArchitecture;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.api.speculative.SpeculativeProposer;
import dev.kiln.engine.SpeculationSettings;
import dev.kiln.engine.testing.Collector;
import dev.kiln.engine.testing.Fixtures;
import dev.kiln.engine.testing.ScriptedProposer;
import dev.kiln.loader.safetensors.SafetensorsCheckpointLoader;
import dev.kiln.models.llama.Qwen2Architecture;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.osgi.framework.Constants;
import org.osgi.framework.ServiceReference;
import org.osgi.service.component.ComponentServiceObjects;

/**
 * The component's choice of proposer: by the configured name among the registered services, obtained only when
 * chosen, swapped by a configuration change or by the service going away while requests stream, without reloading
 * the model or failing a request.
 */
class EngineSpeculationComponentTest {
    private static final String FIXTURE = "qwen2-tiny";
    private static final AtomicInteger IDS = new AtomicInteger(1000);

    /** What Declarative Services hands a consumer of a service it has not obtained yet. */
    private static final class Objects implements ComponentServiceObjects<SpeculativeProposer> {
        final SpeculativeProposer service;
        final AtomicInteger gets = new AtomicInteger();
        final AtomicInteger ungets = new AtomicInteger();

        Objects(SpeculativeProposer service) {
            this.service = service;
        }

        @Override
        public SpeculativeProposer getService() {
            gets.incrementAndGet();
            return service;
        }

        @Override
        public void ungetService(SpeculativeProposer instance) {
            ungets.incrementAndGet();
        }

        @Override
        public ServiceReference<SpeculativeProposer> getServiceReference() {
            throw new UnsupportedOperationException();
        }
    }

    private static Map<String, Object> properties(String name) {
        return Map.of(KilnProperties.NAME, name, Constants.SERVICE_ID, (long) IDS.incrementAndGet());
    }

    private static FakeRegistry registry(Map<String, String> frameworkProperties) {
        var registry = new FakeRegistry(frameworkProperties);
        registry.register(CheckpointLoader.class, new SafetensorsCheckpointLoader(), Map.of(KilnProperties.NAME, "safetensors"));
        registry.register(ModelArchitecture.class, new Qwen2Architecture(), Map.of(KilnProperties.NAME, "qwen2"));
        registry.register(AttentionKernel.class, Fixtures.attention(),
                Map.of(KilnProperties.NAME, "paged", KilnProperties.BACKEND, "cpu"));
        registry.register(ComputeBackend.class, Fixtures.backend(),
                Map.of(KilnProperties.NAME, "cpu", KilnProperties.BACKEND, "cpu"));
        return registry;
    }

    private static Map<String, Object> config(String... keyValues) {
        Map<String, Object> m = new HashMap<>(Map.of("model", Fixtures.folder(FIXTURE).toString(),
                "kv-cache-memory", "16777216", "component.id", 7L));
        for (int i = 0; i < keyValues.length; i += 2) m.put(keyValues[i], keyValues[i + 1]);
        return m;
    }

    private static void awaitModel(EngineComponent engine) {
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (engine.model().isEmpty()) {
            if (System.nanoTime() > deadline) throw new AssertionError("model not loaded: " + engine.status());
            sleep(5);
        }
    }

    private static ScriptedProposer oracle() {
        int[][] prompts = {Fixtures.prompt(FIXTURE, 0), Fixtures.prompt(FIXTURE, 1)};
        int[][] continuations = {Fixtures.greedyContinuation(FIXTURE, 0), Fixtures.greedyContinuation(FIXTURE, 1)};
        return ScriptedProposer.oracle(prompts, continuations, 3, 384);
    }

    /** Drafts the sequence's last token repeated: some acceptances on any text, drafts at every step. */
    private static ScriptedProposer repeater() {
        return new ScriptedProposer(r -> {
            int[] draft = new int[r.maxTokens()];
            java.util.Arrays.fill(draft, r.tokens()[r.tokens().length - 1]);
            return draft;
        }, false);
    }

    private static GenerationRequest longGreedy(String id, int maxTokens) {
        return new GenerationRequest(id, Fixtures.prompt(FIXTURE, 0), SamplingParams.GREEDY, maxTokens, 0, null, true,
                -1, null);
    }

    @Test
    void theConfiguredProposerIsUsedAndOnlyItIsObtained() {
        var a = new Objects(oracle());
        var b = new Objects(repeater());
        var engine = new EngineComponent();
        engine.addProposer(a, properties("a"));
        engine.addProposer(b, properties("b"));
        engine.activate(registry(Map.of()).context(), config("speculative", "a", "num-speculative-tokens", "2"));
        awaitModel(engine);
        assertEquals("a, 2 tokens, batches up to " + SpeculationSettings.DEFAULT_MAX_BATCH, engine.speculationStatus());
        assertEquals(1, a.gets.get());
        assertEquals(0, b.gets.get(), "a proposer that is not configured is never obtained");
        int[] expected = Fixtures.greedyContinuation(FIXTURE, 0);
        Collector c = new Collector();
        engine.submit(GenerationRequest.greedy("x", Fixtures.prompt(FIXTURE, 0), expected.length), c);
        assertArrayEquals(expected, c.await().tokens());
        assertTrue(engine.stats().draftTokensAccepted() > 0);
        assertEquals("a", engine.speculativeStats().getFirst().name());
        engine.deactivate();
        assertEquals(1, a.ungets.get(), "given back on deactivation");
        assertEquals(((ScriptedProposer) a.service).opened(), ((ScriptedProposer) a.service).closed());
    }

    @Test
    void theFrameworkPropertiesOfKilnServeAreTheDefaults() {
        var a = new Objects(oracle());
        var engine = new EngineComponent();
        engine.addProposer(a, properties("a"));
        engine.activate(registry(Map.of("kiln.speculative", "a", "kiln.num-speculative-tokens", "4",
                "kiln.speculative-max-batch", "8")).context(), config());
        awaitModel(engine);
        assertEquals("a, 4 tokens, batches up to 8", engine.speculationStatus());
        engine.deactivate();
    }

    @Test
    void changingTheProposerInTheConfigurationSwapsItWhileRequestsStreamWithoutReloading() {
        var a = new Objects(repeater());
        var b = new Objects(repeater());
        var engine = new EngineComponent();
        engine.addProposer(a, properties("a"));
        engine.addProposer(b, properties("b"));
        Map<String, Object> config = config("speculative", "a");
        engine.activate(registry(Map.of()).context(), config);
        awaitModel(engine);
        Collector streaming = new Collector();
        engine.submit(longGreedy("long", 400), streaming);
        for (String next : List.of("b", "", "a", "b")) {
            sleep(20);
            Map<String, Object> changed = new HashMap<>(config);
            changed.put("speculative", next);
            changed.put("num-speculative-tokens", "3");
            engine.modified(changed);
            assertEquals(next.isEmpty() ? "off" : next + ", 3 tokens, batches up to " + SpeculationSettings.DEFAULT_MAX_BATCH,
                    engine.speculationStatus());
        }
        assertNull(streaming.await().error(), "the request survived four swaps");
        assertEquals(400, streaming.tokens().length);
        assertEquals(2, a.gets.get());
        assertEquals(2, b.gets.get());
        assertEquals(2, a.ungets.get());
        assertEquals(1, b.ungets.get(), "b is still in use");

        // Any other change reloads: the request in flight fails with a clear message.
        Collector reloaded = new Collector();
        engine.submit(longGreedy("reloaded", 3000), reloaded);
        Map<String, Object> other = new HashMap<>(config);
        other.put("max-num-seqs", "4");
        engine.modified(other);
        assertTrue(reloaded.await().error().getMessage().contains("configuration changed"),
                String.valueOf(reloaded.error()));
        awaitModel(engine);
        assertTrue(engine.speculationStatus().startsWith("a, "), engine.speculationStatus());
        engine.deactivate();
        for (Objects o : List.of(a, b)) {
            var p = (ScriptedProposer) o.service;
            assertEquals(p.opened(), p.closed());
            assertEquals(List.of(), p.violations());
        }
    }

    @Test
    void aProposerServiceGoingAwayWhileRequestsStreamFailsNothing() {
        var a = new Objects(repeater());
        var engine = new EngineComponent();
        Map<String, Object> props = properties("a");
        engine.addProposer(a, props);
        engine.activate(registry(Map.of()).context(), config("speculative", "a"));
        awaitModel(engine);
        Collector streaming = new Collector();
        engine.submit(longGreedy("long", 400), streaming);
        sleep(20);
        engine.removeProposer(a, props);
        var p = (ScriptedProposer) a.service;
        assertEquals(p.opened(), p.closed(), "the session is closed before the unbind returns");
        assertEquals("off", engine.speculationStatus());
        long proposedWhenRemoved = p.requests().size();
        sleep(20);
        assertEquals(proposedWhenRemoved, p.requests().size(), "never called after its service went away");
        engine.addProposer(a, properties("a")); // the bundle is back
        assertTrue(engine.speculationStatus().startsWith("a, "));
        assertNull(streaming.await().error());
        assertEquals(400, streaming.tokens().length);
        assertEquals(List.of(), p.violations());
        assertNotNull(engine.stats());
        engine.deactivate();
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            throw new AssertionError(e);
        }
    }
}
