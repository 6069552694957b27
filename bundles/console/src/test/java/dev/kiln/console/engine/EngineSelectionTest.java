package dev.kiln.console.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kiln.api.KilnProperties;
import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Dictionary;
import java.util.HashMap;
import java.util.Hashtable;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceReference;
import org.osgi.service.cm.Configuration;
import org.osgi.service.cm.ConfigurationAdmin;

class EngineSelectionTest {
    /** A registry of services by object class name, each with its properties. */
    private final Map<String, List<Map<String, Object>>> registry = new HashMap<>();
    private final Map<String, String> frameworkProperties = new HashMap<>();
    /** The engine's configuration as stored; null until one exists. */
    private Hashtable<String, Object> stored;
    private String createdWithLocation;

    private void register(Class<?> type, String name, String backend) {
        Map<String, Object> p = new HashMap<>();
        p.put(KilnProperties.NAME, name);
        if (backend != null) p.put(KilnProperties.BACKEND, backend);
        registry.computeIfAbsent(type.getName(), k -> new ArrayList<>()).add(p);
    }

    private EngineSelection selection() {
        BundleContext context = (BundleContext) Proxy.newProxyInstance(getClass().getClassLoader(),
                new Class<?>[] {BundleContext.class}, (proxy, m, args) -> switch (m.getName()) {
                    case "getProperty" -> frameworkProperties.get((String) args[0]);
                    case "getServiceReferences" -> {
                        if (!(args[0] instanceof String type) || args[1] != null) throw new UnsupportedOperationException();
                        List<ServiceReference<?>> refs = new ArrayList<>();
                        for (Map<String, Object> p : registry.getOrDefault(type, List.of())) refs.add(reference(p));
                        yield refs.isEmpty() ? null : refs.toArray(new ServiceReference<?>[0]);
                    }
                    default -> throw new UnsupportedOperationException(m.getName());
                });
        ConfigurationAdmin admin = (ConfigurationAdmin) Proxy.newProxyInstance(getClass().getClassLoader(),
                new Class<?>[] {ConfigurationAdmin.class}, (proxy, m, args) -> switch (m.getName()) {
                    case "listConfigurations" -> stored == null ? null : new Configuration[] {configuration()};
                    case "getConfiguration" -> {
                        if (stored == null) createdWithLocation = (String) args[1];
                        yield configuration();
                    }
                    default -> throw new UnsupportedOperationException(m.getName());
                });
        return new EngineSelection(context, admin);
    }

    private static ServiceReference<?> reference(Map<String, Object> properties) {
        return (ServiceReference<?>) Proxy.newProxyInstance(EngineSelectionTest.class.getClassLoader(),
                new Class<?>[] {ServiceReference.class}, (proxy, m, args) -> switch (m.getName()) {
                    case "getProperty" -> properties.get((String) args[0]);
                    default -> throw new UnsupportedOperationException(m.getName());
                });
    }

    private Configuration configuration() {
        return (Configuration) Proxy.newProxyInstance(getClass().getClassLoader(), new Class<?>[] {Configuration.class},
                (proxy, m, args) -> switch (m.getName()) {
                    case "getProperties" -> stored == null ? null : new Hashtable<>(stored);
                    case "updateIfDifferent" -> {
                        @SuppressWarnings("unchecked") Dictionary<String, Object> d = (Dictionary<String, Object>) args[0];
                        stored = new Hashtable<>();
                        for (String k : Collections.list(d.keys())) stored.put(k, d.get(k));
                        yield true;
                    }
                    default -> throw new UnsupportedOperationException(m.getName());
                });
    }

    @Test
    void withoutConfigurationTheEngineDefaultsAreActive() {
        frameworkProperties.put("kiln.quantization", "fp8");
        Map<Slot, String> active = selection().active();
        assertEquals("cpu", active.get(Slot.BACKEND));
        assertEquals("paged", active.get(Slot.ATTENTION));
        assertEquals("fp8", active.get(Slot.QUANTIZATION), "kiln serve --quantization is the engine's default");
        assertEquals("", active.get(Slot.SPECULATIVE));
    }

    @Test
    void onlyProvidersForTheActiveBackendAreListed() {
        register(dev.kiln.api.attention.AttentionKernel.class, "paged", "cpu");
        register(dev.kiln.api.attention.AttentionKernel.class, "flash", "cuda");
        register(dev.kiln.api.speculative.SpeculativeProposer.class, "reference", null);
        EngineSelection s = selection();
        assertEquals(Set.of("paged"), s.available(Slot.ATTENTION));
        assertEquals(Set.of("reference"), s.available(Slot.SPECULATIVE));
    }

    @Test
    void selectingWritesTheEnginesPropertyKeepingTheRest() throws Exception {
        register(dev.kiln.api.speculative.SpeculativeProposer.class, "reference", null);
        stored = new Hashtable<>(Map.of("model", "/models/x", "speculative", "old"));
        EngineSelection s = selection();
        s.select(Slot.SPECULATIVE, "reference", 4);
        assertEquals("reference", stored.get("speculative"));
        assertEquals("4", stored.get(EngineSelection.NUM_SPECULATIVE_TOKENS));
        assertEquals("/models/x", stored.get("model"));
        assertEquals("reference", s.active().get(Slot.SPECULATIVE));

        s.select(Slot.SPECULATIVE, "", null);
        assertFalse(stored.containsKey("speculative"), "none removes the property");
    }

    @Test
    void aNewConfigurationIsCreatedForAnyBundleToReceive() throws Exception {
        register(dev.kiln.api.quant.Quantizer.class, "fp8", "cpu");
        selection().select(Slot.QUANTIZATION, "fp8", null);
        assertEquals("?", createdWithLocation);
        assertEquals("fp8", stored.get("quantization"));
    }

    @Test
    void unregisteredNamesAndForbiddenNonesAreRefusedWithoutWriting() {
        register(dev.kiln.api.attention.AttentionKernel.class, "paged", "cpu");
        EngineSelection s = selection();
        assertThrows(IllegalArgumentException.class, () -> s.select(Slot.ATTENTION, "evil\nmodel=/etc", null));
        assertThrows(IllegalArgumentException.class, () -> s.select(Slot.ATTENTION, "", null));
        assertThrows(IllegalArgumentException.class, () -> s.select(Slot.SPECULATIVE, "", 99));
        assertEquals(null, stored);
    }
}
