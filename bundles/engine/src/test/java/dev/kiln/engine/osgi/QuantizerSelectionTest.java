package dev.kiln.engine.osgi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointLoader;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ModelArchitecture;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.engine.ModelServices;
import dev.kiln.engine.testing.Fixtures;
import dev.kiln.loader.safetensors.SafetensorsCheckpointLoader;
import dev.kiln.models.llama.Qwen2Architecture;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * A weight format may have a provider per backend under one {@code kiln.name}: the engine takes the one registered
 * for its backend ({@code kiln.backend}) or for none and supporting it, whatever the others' ranking, and refuses the
 * format by name when none fits.
 */
class QuantizerSelectionTest {
    private static final String FIXTURE = "qwen2-tiny";
    private static final String FORMAT = "weight_only_int8";

    /** A stand-in format that keeps the checkpoint's weights, supports one backend (or all) and counts its loads. */
    private static final class CountingQuantizer implements Quantizer {
        private final String backend;
        private int loads;

        /** @param backend the backend it supports, or null for every backend */
        CountingQuantizer(String backend) {
            this.backend = backend;
        }

        @Override
        public String name() {
            return FORMAT;
        }

        @Override
        public boolean supports(ComputeBackend b) {
            return backend == null || backend.equals(b.name());
        }

        @Override
        public boolean isPreQuantized(Checkpoint checkpoint) {
            return false;
        }

        @Override
        public Weight load(Checkpoint checkpoint, String prefix, ComputeBackend b) {
            loads++;
            return b.denseWeight(checkpoint.tensor(prefix + ".weight"));
        }
    }

    private static FakeRegistry registry() {
        var registry = new FakeRegistry(Map.of());
        registry.register(CheckpointLoader.class, new SafetensorsCheckpointLoader(), Map.of(KilnProperties.NAME, "safetensors"));
        registry.register(ModelArchitecture.class, new Qwen2Architecture(), Map.of(KilnProperties.NAME, "qwen2"));
        return registry;
    }

    /** Registers a quantizer of {@link #FORMAT}, bound to a backend by {@code kiln.backend} when it is not null. */
    private static void register(FakeRegistry registry, Quantizer quantizer, String backend) {
        Map<String, Object> properties = new HashMap<>();
        properties.put(KilnProperties.NAME, FORMAT);
        if (backend != null) properties.put(KilnProperties.BACKEND, backend);
        registry.register(Quantizer.class, quantizer, properties);
    }

    private static void load(FakeRegistry registry) throws Exception {
        var services = new ModelServices(registry.context(), status -> { }, Set.of());
        ComputeBackend backend = Fixtures.backend();
        try (CausalLanguageModel model = services.load(Fixtures.folder(FIXTURE), backend, Fixtures.attention(), FORMAT, 64)) {
            assertEquals("qwen2", model.architecture());
        } finally {
            services.release();
        }
    }

    @Test
    void theQuantizerRegisteredForTheBackendIsTakenEvenWhenAnotherOfItsNameRanksHigher() throws Exception {
        var registry = registry();
        var cuda = new CountingQuantizer("cuda");
        var cpu = new CountingQuantizer("cpu");
        register(registry, cuda, "cuda"); // older: the registry ranks it first
        register(registry, cpu, "cpu");
        load(registry);
        assertEquals(0, cuda.loads, "the CUDA format was used on the CPU backend");
        assertTrue(cpu.loads > 0, "the CPU format loaded no layer");
    }

    @Test
    void aQuantizerRegisteredForNoBackendServesTheBackendsItSupports() throws Exception {
        var registry = registry();
        var cuda = new CountingQuantizer("cuda");
        var any = new CountingQuantizer(null);
        register(registry, cuda, "cuda");
        register(registry, any, null);
        load(registry);
        assertEquals(0, cuda.loads);
        assertTrue(any.loads > 0, "the backend-neutral format loaded no layer");
    }

    @Test
    void withoutAQuantizerForTheBackendTheFormatIsRefusedByName() {
        var registry = registry();
        register(registry, new CountingQuantizer("cuda"), "cuda");
        register(registry, new CountingQuantizer("cuda"), null); // names no backend, but does not support the CPU
        var e = assertThrows(IllegalArgumentException.class, () -> load(registry));
        assertEquals("the 'weight_only_int8' weight format has no kernels for the cpu backend", e.getMessage());
    }
}
