package dev.kiln.quant.testing;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.quant.Quantizer;
import java.util.LinkedHashMap;
import java.util.Map;

/** A quantizer that delegates and remembers every weight it produced, by layer prefix, so a test can inspect them. */
public final class RecordingQuantizer implements Quantizer {
    private final Quantizer delegate;
    private final Map<String, Weight> loaded = new LinkedHashMap<>();

    public RecordingQuantizer(Quantizer delegate) {
        this.delegate = delegate;
    }

    /** The weights loaded so far, by prefix, in load order. */
    public Map<String, Weight> loaded() {
        return loaded;
    }

    @Override
    public String name() {
        return delegate.name();
    }

    @Override
    public boolean supports(ComputeBackend backend) {
        return delegate.supports(backend);
    }

    @Override
    public boolean isPreQuantized(Checkpoint checkpoint) {
        return delegate.isPreQuantized(checkpoint);
    }

    @Override
    public Weight load(Checkpoint checkpoint, String prefix, ComputeBackend backend) {
        Weight weight = delegate.load(checkpoint, prefix, backend);
        loaded.put(prefix, weight);
        return weight;
    }
}
