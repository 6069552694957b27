package dev.kiln.console.engine;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.api.speculative.SpeculativeProposer;

/**
 * A choice the engine's configuration makes among registered services, by {@code kiln.name}: the property of PID
 * {@code dev.kiln.engine} that names it, the service type, what applies when the property is absent, and whether
 * "none" is a valid choice (no quantization on load, no speculation).
 */
public enum Slot {
    BACKEND("backend", "Compute backend", ComputeBackend.class, "cpu", false, false),
    ATTENTION("attention", "Attention kernel", AttentionKernel.class, "paged", false, true),
    QUANTIZATION("quantization", "Quantizer", Quantizer.class, "", true, true),
    SPECULATIVE("speculative", "Speculative proposer", SpeculativeProposer.class, "", true, false);

    /** The engine configuration's property. */
    public final String property;
    /** What operators call it. */
    public final String title;
    /** The service type whose providers are the choices. */
    public final Class<?> type;
    /** The engine's default when the property is absent ("" for none). */
    public final String fallback;
    /** Whether choosing none (removing the property) is allowed. */
    public final boolean optional;
    /** Whether providers are per backend ({@code kiln.backend}), so only the active backend's count. */
    public final boolean perBackend;

    Slot(String property, String title, Class<?> type, String fallback, boolean optional, boolean perBackend) {
        this.property = property;
        this.title = title;
        this.type = type;
        this.fallback = fallback;
        this.optional = optional;
        this.perBackend = perBackend;
    }

    /** The slot configured by that property, if any. */
    public static java.util.Optional<Slot> byProperty(String property) {
        for (Slot s : values()) if (s.property.equals(property)) return java.util.Optional.of(s);
        return java.util.Optional.empty();
    }
}
