package dev.kiln.quant.testing;

import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.loader.safetensors.TensorValues;
import java.util.HashMap;
import java.util.Map;

/** A checkpoint's tensors as float64 for {@link Float64Forward}, each converted once (exactly: every stored type fits). */
public final class CheckpointTensors implements Float64Forward.Tensors {
    private final Checkpoint checkpoint;
    private final Map<String, double[]> converted = new HashMap<>();

    public CheckpointTensors(Checkpoint checkpoint) {
        this.checkpoint = checkpoint;
    }

    @Override
    public synchronized double[] get(String name) {
        return converted.computeIfAbsent(name, n -> {
            float[] values = TensorValues.toFloats(checkpoint.tensor(n));
            double[] out = new double[values.length];
            for (int i = 0; i < values.length; i++) out[i] = values[i];
            return out;
        });
    }

    @Override
    public boolean has(String name) {
        return checkpoint.find(name).isPresent();
    }
}
