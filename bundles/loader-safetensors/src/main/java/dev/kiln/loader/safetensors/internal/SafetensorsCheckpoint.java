package dev.kiln.loader.safetensors.internal;

import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.loader.safetensors.SafetensorsFile;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * A checkpoint made of one or more mapped safetensors files and a configuration. It owns the files: closing it
 * unmaps all of them.
 */
public final class SafetensorsCheckpoint implements Checkpoint {
    private final Path location;
    private final ModelConfig config;
    private final List<SafetensorsFile> files;
    private final Map<String, CheckpointTensor> tensors;
    private final long dataBytes;

    private SafetensorsCheckpoint(Path location, ModelConfig config, List<SafetensorsFile> files,
                                  Map<String, CheckpointTensor> tensors) {
        this.location = location;
        this.config = config;
        this.files = List.copyOf(files);
        this.tensors = Collections.unmodifiableMap(tensors);
        this.dataBytes = files.stream().mapToLong(SafetensorsFile::dataBytes).sum();
    }

    /**
     * Opens one safetensors file as a checkpoint.
     *
     * @param location the folder or file the user named
     */
    public static SafetensorsCheckpoint single(Path location, ModelConfig config, Path file) throws IOException {
        SafetensorsFile opened = SafetensorsFile.open(file);
        return new SafetensorsCheckpoint(location, config, List.of(opened), new LinkedHashMap<>(opened.tensors()));
    }

    /**
     * Opens every shard an index names, checking that each tensor lies in the shard the index gives for it and
     * that no tensor appears in two shards. A tensor a shard holds but the index omits is kept, as the file vouches
     * for it. Shards already opened are closed again when a later one fails.
     *
     * @param location the folder or file the user named
     */
    public static SafetensorsCheckpoint sharded(Path location, ModelConfig config, ShardIndex index) throws IOException {
        List<SafetensorsFile> opened = new ArrayList<>();
        try {
            Map<String, CheckpointTensor> tensors = new LinkedHashMap<>();
            for (Path shard : index.shards()) {
                if (!Files.isRegularFile(shard)) {
                    throw new InvalidCheckpointException(index.file(), shard.getFileName().toString(),
                            "names a shard file that does not exist");
                }
                SafetensorsFile file = SafetensorsFile.open(shard);
                opened.add(file);
                for (CheckpointTensor t : file.tensors().values()) {
                    CheckpointTensor earlier = tensors.putIfAbsent(t.name(), t);
                    if (earlier != null) {
                        throw new InvalidCheckpointException(shard, t.name(), "tensor also appears in " + earlier.file());
                    }
                }
            }
            for (Map.Entry<String, Path> e : index.weightMap().entrySet()) {
                CheckpointTensor t = tensors.get(e.getKey());
                if (t == null || !t.file().equals(e.getValue())) {
                    throw new InvalidCheckpointException(index.file(), e.getKey(), "is listed in shard "
                            + e.getValue().getFileName() + ", which does not contain it");
                }
            }
            return new SafetensorsCheckpoint(location, config, opened, tensors);
        } catch (Throwable failure) {
            opened.forEach(SafetensorsFile::close);
            throw failure;
        }
    }

    @Override
    public Path location() {
        return location;
    }

    @Override
    public ModelConfig config() {
        return config;
    }

    @Override
    public Set<String> tensorNames() {
        return tensors.keySet();
    }

    @Override
    public Optional<CheckpointTensor> find(String name) {
        return Optional.ofNullable(tensors.get(name));
    }

    @Override
    public long dataBytes() {
        return dataBytes;
    }

    @Override
    public void close() {
        files.forEach(SafetensorsFile::close);
    }

    @Override
    public String toString() {
        return "SafetensorsCheckpoint[" + location + ", " + files.size() + " file(s), " + tensors.size() + " tensors]";
    }
}
