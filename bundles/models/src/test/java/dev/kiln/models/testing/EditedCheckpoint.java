package dev.kiln.models.testing;

import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.api.tensor.DType;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * A real checkpoint seen through edits: tensors with a different declared shape or type, tensors replaced or
 * removed, config fields changed. Unless replaced, the data stays the original mapping.
 */
public final class EditedCheckpoint implements Checkpoint {
    private final Checkpoint original;
    private final Map<String, CheckpointTensor> replaced = new HashMap<>();
    private final Set<String> removed = new LinkedHashSet<>();
    private ModelConfig config;
    private boolean closed;

    public EditedCheckpoint(Checkpoint original) {
        this.original = original;
        this.config = original.config();
    }

    /** Declares the tensor with another shape. */
    public EditedCheckpoint reshape(String name, long... shape) {
        CheckpointTensor t = original.tensor(name);
        replaced.put(name, new CheckpointTensor(name, t.dtype(), shape, t.data(), t.file()));
        return this;
    }

    /** Declares the tensor with another element type. */
    public EditedCheckpoint retype(String name, DType dtype) {
        CheckpointTensor t = original.tensor(name);
        replaced.put(name, new CheckpointTensor(name, dtype, t.shape(), t.data(), t.file()));
        return this;
    }

    /** Replaces the tensor (or adds one of that name). */
    public EditedCheckpoint replace(CheckpointTensor tensor) {
        replaced.put(tensor.name(), tensor);
        return this;
    }

    /** Hides the tensor. */
    public EditedCheckpoint remove(String name) {
        removed.add(name);
        return this;
    }

    /** Sets a config.json field (null removes it). */
    public EditedCheckpoint configure(String field, Object value) {
        Map<String, Object> json = new LinkedHashMap<>(config.json());
        json.put(field, value);
        config = new ModelConfig(json, config.source());
        return this;
    }

    @Override
    public Path location() {
        return original.location();
    }

    @Override
    public ModelConfig config() {
        return config;
    }

    @Override
    public Set<String> tensorNames() {
        Set<String> names = new LinkedHashSet<>(original.tensorNames());
        names.removeAll(removed);
        return names;
    }

    @Override
    public Optional<CheckpointTensor> find(String name) {
        if (removed.contains(name)) return Optional.empty();
        CheckpointTensor t = replaced.get(name);
        return t != null ? Optional.of(t) : original.find(name);
    }

    @Override
    public long dataBytes() {
        return original.dataBytes();
    }

    @Override
    public void close() {
        closed = true;
        original.close();
    }

    /** Whether {@link #close()} was called. */
    public boolean closed() {
        return closed;
    }
}
