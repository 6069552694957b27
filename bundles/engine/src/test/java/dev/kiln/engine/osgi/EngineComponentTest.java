package dev.kiln.engine.osgi;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.checkpoint.CheckpointLoader;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.ModelDescription;
import dev.kiln.api.model.ModelArchitecture;
import dev.kiln.engine.testing.Collector;
import dev.kiln.engine.testing.Fixtures;
import dev.kiln.loader.safetensors.SafetensorsCheckpointLoader;
import dev.kiln.models.llama.LlamaArchitecture;
import dev.kiln.models.llama.Qwen2Architecture;
import dev.kiln.sampler.DefaultSampler;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.osgi.framework.ServiceReference;

/**
 * The component's lifecycle against a fake service registry: loading in the background from the configured
 * services, serving, reloading when a service it uses goes away, and failing requests in flight when stopped.
 */
class EngineComponentTest {
    private static final String FIXTURE = "qwen2-tiny";

    private static FakeRegistry registryWithServices(Map<String, String> frameworkProperties) {
        var registry = new FakeRegistry(frameworkProperties);
        registry.register(CheckpointLoader.class, new SafetensorsCheckpointLoader(), Map.of(KilnProperties.NAME, "safetensors"));
        registry.register(ModelArchitecture.class, new Qwen2Architecture(), Map.of(KilnProperties.NAME, "qwen2"));
        registry.register(ModelArchitecture.class, new LlamaArchitecture(), Map.of(KilnProperties.NAME, "llama"));
        registry.register(AttentionKernel.class, Fixtures.attention(),
                Map.of(KilnProperties.NAME, "paged", KilnProperties.BACKEND, "cpu"));
        return registry;
    }

    private static ServiceReference<?> registerBackend(FakeRegistry registry) {
        return registry.register(ComputeBackend.class, Fixtures.backend(),
                Map.of(KilnProperties.NAME, "cpu", KilnProperties.BACKEND, "cpu"));
    }

    private static ModelDescription awaitModel(EngineComponent engine) {
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (engine.model().isEmpty()) {
            if (System.nanoTime() > deadline) throw new AssertionError("model not loaded: " + engine.status());
            sleep(5);
        }
        return engine.model().orElseThrow();
    }

    @Test
    void aSettingReadBackAsTextFromItsFileIsTheSameConfiguration() {
        // The console's configuration form stores numbers; the .cfg file written from it reads back as text.
        assertTrue(EngineComponent.sameValues(Map.of("max-num-seqs", 4, "backend", "cpu"), Map.of("max-num-seqs", "4", "backend", "cpu")));
        assertTrue(EngineComponent.sameValues(Map.of("ids", new int[] {1, 2}), Map.of("ids", new int[] {1, 2})));
        assertTrue(!EngineComponent.sameValues(Map.of("max-num-seqs", 4), Map.of("max-num-seqs", "5")));
        assertTrue(!EngineComponent.sameValues(Map.of("max-num-seqs", 4), Map.of("max-num-seqs", 4, "backend", "cpu")));
        assertTrue(!EngineComponent.sameValues(Map.of("ids", new int[] {1, 2}), Map.of("ids", new int[] {2, 1})));
    }

    @Test
    void withoutAModelTheEngineIsRegisteredButRefusesRequests() {
        var engine = new EngineComponent();
        engine.activate(new FakeRegistry(Map.of()).context(), Map.of());
        assertTrue(engine.model().isEmpty());
        assertEquals(0, engine.stats().kvBlocksTotal());
        var e = assertThrows(IllegalStateException.class,
                () -> engine.submit(GenerationRequest.greedy("x", new int[] {1}, 1), new Collector()));
        assertTrue(e.getMessage().startsWith("no model loaded"), e.getMessage());
        engine.deactivate();
    }

    @Test
    void aModelThatCannotBeLoadedIsReportedNotThrown() {
        var registry = registryWithServices(Map.of());
        registerBackend(registry);
        var engine = new EngineComponent();
        engine.activate(registry.context(), Map.of("model", "/nonexistent/model"));
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (!engine.status().startsWith("failed") && System.nanoTime() < deadline) sleep(5);
        assertTrue(engine.status().contains("does not exist"), engine.status());
        var e = assertThrows(IllegalStateException.class,
                () -> engine.submit(GenerationRequest.greedy("x", new int[] {1}, 1), new Collector()));
        assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
        engine.deactivate();
    }

    @Test
    void loadsServesReloadsWhenTheBackendGoesAwayAndFailsRequestsWhenStopped() {
        String folder = Fixtures.folder(FIXTURE).toString();
        var registry = registryWithServices(Map.of("kiln.model", folder));
        var engine = new EngineComponent();
        engine.bindSampler(new DefaultSampler());
        // Numbers may come as strings from a .cfg file.
        engine.activate(registry.context(), Map.of("kv-cache-memory", "16777216", "max-num-seqs", 8,
                "served-model-name", "tiny"));
        long deadline = System.nanoTime() + 10_000_000_000L; // the loader thread reaches the wait on its own time
        while (!engine.status().contains("waiting for compute backend") && System.nanoTime() < deadline) sleep(10);
        assertTrue(engine.model().isEmpty(), "no backend registered yet");
        assertTrue(engine.status().contains("waiting for compute backend 'cpu'"), engine.status());

        ServiceReference<?> backend = registerBackend(registry);
        ModelDescription model = awaitModel(engine);
        assertEquals("tiny", model.id());
        assertEquals("qwen2", model.architecture());
        assertEquals(folder, model.location());
        assertEquals("bfloat16", model.weightFormat());
        assertEquals(4096, model.contextLength());
        assertEquals((16 << 20) / (16 * 768), engine.stats().kvBlocksTotal(), "kv-cache-memory given as a string");

        int[] prompt = Fixtures.prompt(FIXTURE, 0);
        int[] expected = Fixtures.greedyContinuation(FIXTURE, 0);
        Collector first = new Collector();
        engine.submit(GenerationRequest.greedy("a", prompt, expected.length), first);
        assertArrayEquals(expected, first.await().tokens());

        // The backend goes away mid-request: the request fails, the model is dropped and reloaded on its return.
        Collector inFlight = new Collector();
        engine.submit(GenerationRequest.greedy("b", prompt, 3000), inFlight);
        registry.unregister(backend);
        inFlight.await();
        assertNotNull(inFlight.error());
        assertTrue(inFlight.error().getMessage().contains("went away"), inFlight.error().getMessage());
        assertTrue(engine.model().isEmpty());
        registerBackend(registry);
        awaitModel(engine);
        Collector again = new Collector();
        engine.submit(GenerationRequest.greedy("c", prompt, expected.length), again);
        assertArrayEquals(expected, again.await().tokens());

        Collector stopped = new Collector();
        engine.submit(GenerationRequest.greedy("d", prompt, 3000), stopped);
        engine.deactivate();
        stopped.await();
        assertTrue(stopped.error().getMessage().contains("stopped"), stopped.error().getMessage());
        assertTrue(engine.model().isEmpty());
    }

    @Test
    void aBf16KvCacheOnTheCpuBackendFailsTheLoadNamingTheSetting() {
        var registry = registryWithServices(Map.of("kiln.model", Fixtures.folder(FIXTURE).toString()));
        registerBackend(registry);
        var engine = new EngineComponent();
        engine.activate(registry.context(), Map.of("kv-cache-dtype", "bf16"));
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (!engine.status().startsWith("failed") && System.nanoTime() < deadline) sleep(5);
        assertTrue(engine.status().contains("kv-cache-dtype bf16"), engine.status());
        assertTrue(engine.model().isEmpty());
        engine.deactivate();
    }

    @Test
    void anUnknownKvCacheDtypeIsAnInvalidConfiguration() {
        var registry = registryWithServices(Map.of("kiln.model", Fixtures.folder(FIXTURE).toString()));
        registerBackend(registry);
        var engine = new EngineComponent();
        engine.activate(registry.context(), Map.of("kv-cache-dtype", "fp8"));
        assertTrue(engine.status().startsWith("invalid configuration"), engine.status());
        assertTrue(engine.status().contains("kv-cache-dtype must be auto, f32 or bf16"), engine.status());
        engine.deactivate();
    }

    /** `kiln serve --kv-cache-dtype` sets the framework property; a configured value wins over it. */
    @Test
    void theConfiguredKvCacheDtypeWinsOverTheFrameworkProperty() {
        var registry = registryWithServices(Map.of("kiln.model", Fixtures.folder(FIXTURE).toString(),
                "kiln.kv-cache-dtype", "bf16"));
        registerBackend(registry);
        var engine = new EngineComponent();
        engine.activate(registry.context(), Map.of("kv-cache-dtype", "f32", "kv-cache-memory", 16L << 20));
        awaitModel(engine);
        // f32: 3 layers x 2 KV heads x (16 + 16) x 4 bytes = 768 bytes a token.
        assertEquals((16 << 20) / (16 * 768), engine.stats().kvBlocksTotal());
        engine.deactivate();

        var fromFramework = new EngineComponent();
        fromFramework.activate(registry.context(), Map.of());
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (!fromFramework.status().startsWith("failed") && System.nanoTime() < deadline) sleep(5);
        assertTrue(fromFramework.status().contains("kv-cache-dtype bf16"), fromFramework.status());
        fromFramework.deactivate();
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            throw new AssertionError(e);
        }
    }
}
