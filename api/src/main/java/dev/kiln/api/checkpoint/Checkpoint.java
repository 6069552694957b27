package dev.kiln.api.checkpoint;

import dev.kiln.api.model.ModelConfig;
import java.nio.file.Path;
import java.util.Optional;
import java.util.Set;

/**
 * An opened model checkpoint: its configuration and its named tensors, memory-mapped. Closing it unmaps the
 * files; tensors obtained from it must not be used afterwards (weights that a backend keeps are either copies or
 * hold the checkpoint open through the model that owns them).
 */
public interface Checkpoint extends AutoCloseable {
    /** The folder or file the checkpoint was opened from. */
    Path location();

    /** The parsed {@code config.json}. */
    ModelConfig config();

    /** Names of every tensor, across all shards. */
    Set<String> tensorNames();

    /** The tensor of that name, if present. */
    Optional<CheckpointTensor> find(String name);

    /**
     * The tensor of that name.
     *
     * @throws InvalidCheckpointException naming the checkpoint and the tensor when it is absent
     */
    default CheckpointTensor tensor(String name) {
        return find(name).orElseThrow(() -> new InvalidCheckpointException(location(), name, "tensor is missing"));
    }

    /** Total bytes of tensor data across all files. */
    long dataBytes();

    @Override
    void close();
}
