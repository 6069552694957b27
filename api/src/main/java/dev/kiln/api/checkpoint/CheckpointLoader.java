package dev.kiln.api.checkpoint;

import java.io.IOException;
import java.nio.file.Path;

/**
 * Opens checkpoints of one storage format (service property {@code kiln.name}, e.g. {@code safetensors}).
 *
 * <p>A loader validates everything it reads before trusting it: a truncated, corrupt or hostile file is refused
 * with an {@link InvalidCheckpointException} naming the file and the field, never with an out-of-bounds access.
 */
public interface CheckpointLoader {
    /** Whether this loader recognises the folder or file (cheap: looks at names, not contents). */
    boolean canLoad(Path location);

    /**
     * Opens the checkpoint, memory-mapping its data.
     *
     * @throws InvalidCheckpointException when a file is malformed
     * @throws IOException                when a file cannot be read
     */
    Checkpoint open(Path location) throws IOException;
}
