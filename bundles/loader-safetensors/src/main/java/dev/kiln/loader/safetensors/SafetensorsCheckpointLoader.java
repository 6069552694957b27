package dev.kiln.loader.safetensors;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointLoader;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.loader.safetensors.internal.JsonFiles;
import dev.kiln.loader.safetensors.internal.SafetensorsCheckpoint;
import dev.kiln.loader.safetensors.internal.ShardIndex;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import org.osgi.service.component.annotations.Component;

/**
 * Opens Hugging Face checkpoints stored as safetensors: a folder holding {@code config.json} and either
 * {@code model.safetensors} or shards listed by {@code model.safetensors.index.json}; or the path of one
 * {@code .safetensors} file, or of an index, with {@code config.json} beside it.
 *
 * <p>Stateless; usable directly (tests, tools) through its public constructor as well as a service.
 */
@Component(service = CheckpointLoader.class, property = KilnProperties.NAME + "=safetensors")
public final class SafetensorsCheckpointLoader implements CheckpointLoader {
    static final String CONFIG = "config.json";
    static final String SINGLE_FILE = "model.safetensors";
    private static final String SUFFIX = ".safetensors";
    private static final String INDEX_SUFFIX = ".safetensors.index.json";

    /** A loader; it keeps no state between calls. */
    public SafetensorsCheckpointLoader() {}

    @Override
    public boolean canLoad(Path location) {
        if (Files.isDirectory(location)) {
            return Files.isRegularFile(location.resolve(CONFIG))
                    && (Files.isRegularFile(location.resolve(SINGLE_FILE))
                    || Files.isRegularFile(location.resolve(ShardIndex.FILE_NAME)));
        }
        String name = fileName(location);
        return Files.isRegularFile(location) && (name.endsWith(SUFFIX) || name.endsWith(INDEX_SUFFIX))
                && Files.isRegularFile(location.resolveSibling(CONFIG));
    }

    @Override
    public Checkpoint open(Path location) throws IOException {
        if (Files.isDirectory(location)) {
            ModelConfig config = readConfig(location.resolve(CONFIG));
            Path single = location.resolve(SINGLE_FILE);
            if (Files.isRegularFile(single)) return SafetensorsCheckpoint.single(location, config, single);
            Path index = location.resolve(ShardIndex.FILE_NAME);
            if (Files.isRegularFile(index)) return SafetensorsCheckpoint.sharded(location, config, ShardIndex.read(index));
            throw new InvalidCheckpointException(location, null,
                    "holds neither " + SINGLE_FILE + " nor " + ShardIndex.FILE_NAME);
        }
        if (!Files.exists(location)) throw new NoSuchFileException(location.toString());
        String name = fileName(location);
        if (name.endsWith(INDEX_SUFFIX)) {
            ModelConfig config = readConfig(location.resolveSibling(CONFIG));
            return SafetensorsCheckpoint.sharded(location, config, ShardIndex.read(location));
        }
        if (name.endsWith(SUFFIX)) {
            return SafetensorsCheckpoint.single(location, readConfig(location.resolveSibling(CONFIG)), location);
        }
        throw new InvalidCheckpointException(location, null,
                "is neither a checkpoint folder nor a " + SUFFIX + " or " + INDEX_SUFFIX + " file");
    }

    /**
     * Reads a {@code config.json}.
     *
     * @throws InvalidCheckpointException naming the file when it is missing or is not a JSON object
     * @throws IOException                when it cannot be read
     */
    public static ModelConfig readConfig(Path configFile) throws IOException {
        return new ModelConfig(JsonFiles.readObject(configFile), configFile);
    }

    private static String fileName(Path location) {
        Path name = location.getFileName();
        return name == null ? "" : name.toString();
    }
}
