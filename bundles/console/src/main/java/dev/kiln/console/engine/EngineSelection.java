package dev.kiln.console.engine;

import dev.kiln.api.KilnProperties;
import java.io.IOException;
import java.util.Dictionary;
import java.util.Hashtable;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;
import java.util.SortedSet;
import java.util.TreeSet;
import org.osgi.framework.BundleContext;
import org.osgi.framework.InvalidSyntaxException;
import org.osgi.framework.ServiceReference;
import org.osgi.service.cm.Configuration;
import org.osgi.service.cm.ConfigurationAdmin;

/**
 * Reads which provider the engine's configuration selects for each {@link Slot}, lists the providers registered
 * for it, and switches by updating PID {@code dev.kiln.engine} through Config Admin, as an operator editing
 * {@code etc/dev.kiln.engine.cfg} would (the engine then reloads with the new choice). Only a registered
 * provider's name, or none where a slot allows it, is ever written.
 */
public final class EngineSelection {
    /** Framework properties that {@code kiln serve} options set as the engine's defaults. */
    private static final Map<Slot, String> FRAMEWORK_DEFAULTS = Map.of(Slot.QUANTIZATION, "kiln.quantization",
            Slot.SPECULATIVE, "kiln.speculative");
    /** The engine's property for how many tokens a proposer drafts per step. */
    public static final String NUM_SPECULATIVE_TOKENS = "num-speculative-tokens";
    // The engine's bundle must receive the configuration even when this bundle creates it.
    private static final String ANY_LOCATION = "?";

    private final BundleContext context;
    private final ConfigurationAdmin configurationAdmin;

    public EngineSelection(BundleContext context, ConfigurationAdmin configurationAdmin) {
        this.context = context;
        this.configurationAdmin = configurationAdmin;
    }

    /** The engine configuration's properties (empty when it has none). */
    public Map<String, Object> configuration() {
        Map<String, Object> out = new LinkedHashMap<>();
        try {
            Configuration[] found = configurationAdmin.listConfigurations("(service.pid=" + KilnProperties.ENGINE_PID + ")");
            if (found != null && found.length > 0 && found[0].getProperties() != null) {
                Dictionary<String, Object> p = found[0].getProperties();
                for (var keys = p.keys(); keys.hasMoreElements(); ) {
                    String k = keys.nextElement();
                    out.put(k, p.get(k));
                }
            }
        } catch (IOException | InvalidSyntaxException e) {
            throw new IllegalStateException("cannot read the engine's configuration: " + e.getMessage(), e);
        }
        return out;
    }

    /** The selected provider's name for each slot ("" for none). */
    public Map<Slot, String> active() {
        Map<String, Object> config = configuration();
        Map<Slot, String> out = new LinkedHashMap<>();
        for (Slot s : Slot.values()) out.put(s, active(s, config));
        return out;
    }

    private String active(Slot slot, Map<String, Object> config) {
        Object v = config.get(slot.property);
        if (v != null && !String.valueOf(v).isBlank()) return String.valueOf(v).strip();
        String framework = FRAMEWORK_DEFAULTS.containsKey(slot) ? context.getProperty(FRAMEWORK_DEFAULTS.get(slot)) : null;
        return framework != null && !framework.isBlank() ? framework.strip() : slot.fallback;
    }

    /** The names of the registered providers of the slot's type (for the active backend where that matters). */
    public SortedSet<String> available(Slot slot) {
        String backend = active(Slot.BACKEND, configuration());
        SortedSet<String> names = new TreeSet<>();
        try {
            ServiceReference<?>[] refs = context.getServiceReferences(slot.type.getName(), null);
            for (ServiceReference<?> ref : refs == null ? new ServiceReference<?>[0] : refs) {
                Object name = ref.getProperty(KilnProperties.NAME);
                if (name == null) continue;
                Object on = ref.getProperty(KilnProperties.BACKEND);
                if (slot.perBackend && on != null && !Objects.equals(String.valueOf(on), backend)) continue;
                names.add(String.valueOf(name));
            }
        } catch (InvalidSyntaxException e) {
            throw new IllegalStateException(e); // built from a class name: cannot happen
        }
        return names;
    }

    /**
     * Selects {@code name} for the slot ("" selects none where allowed) and, for the speculative slot, optionally
     * the number of draft tokens.
     *
     * @throws IllegalArgumentException when the name is not a registered provider, or the number is out of range
     */
    public void select(Slot slot, String name, Integer numSpeculativeTokens) throws IOException {
        String chosen = name == null ? "" : name.strip();
        if (chosen.isEmpty() ? !slot.optional : !available(slot).contains(chosen)) {
            throw new IllegalArgumentException("'" + chosen + "' is not a registered " + slot.title.toLowerCase() + " here");
        }
        if (numSpeculativeTokens != null && (slot != Slot.SPECULATIVE || numSpeculativeTokens < 1 || numSpeculativeTokens > 16)) {
            throw new IllegalArgumentException("the number of speculative tokens must be between 1 and 16");
        }
        Configuration config = configurationAdmin.getConfiguration(KilnProperties.ENGINE_PID, ANY_LOCATION);
        Dictionary<String, Object> properties = config.getProperties() == null ? new Hashtable<>() : config.getProperties();
        if (chosen.isEmpty()) properties.remove(slot.property);
        else properties.put(slot.property, chosen);
        if (numSpeculativeTokens != null) properties.put(NUM_SPECULATIVE_TOKENS, numSpeculativeTokens.toString());
        config.updateIfDifferent(properties);
    }
}
