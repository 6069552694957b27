package dev.kiln.loader.safetensors.internal;

import dev.kiln.api.checkpoint.InvalidCheckpointException;
import java.io.IOException;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;

/**
 * A {@code model.safetensors.index.json}: which shard file holds each tensor of a checkpoint split across files.
 *
 * @param file      the index file, named in errors
 * @param weightMap tensor name to shard path (resolved, inside the index's folder), in file order
 */
public record ShardIndex(Path file, Map<String, Path> weightMap) {
    /** Conventional name of the index in a Hugging Face folder. */
    public static final String FILE_NAME = "model.safetensors.index.json";

    /** The shard files in the order they are first named. */
    public List<Path> shards() {
        return new ArrayList<>(new LinkedHashSet<>(weightMap.values()));
    }

    /**
     * Reads an index, checking that every shard it names is a plain path inside the index's own folder.
     *
     * @throws InvalidCheckpointException when the index is malformed
     * @throws IOException                when it cannot be read
     */
    public static ShardIndex read(Path file) throws IOException {
        Map<String, Object> json = JsonFiles.readObject(file);
        Object weightMap = json.get("weight_map");
        if (weightMap == null) throw new InvalidCheckpointException(file, "weight_map", "is missing");
        if (!(weightMap instanceof Map<?, ?> entries)) {
            throw new InvalidCheckpointException(file, "weight_map", "must be an object of tensor name to shard file");
        }
        if (entries.isEmpty()) throw new InvalidCheckpointException(file, "weight_map", "names no tensors");
        Path folder = file.toAbsolutePath().normalize().getParent();
        Map<String, Path> resolved = new LinkedHashMap<>();
        Map<String, Path> shardPaths = new LinkedHashMap<>();
        for (Map.Entry<?, ?> e : entries.entrySet()) {
            String tensor = (String) e.getKey();
            if (!(e.getValue() instanceof String shard)) {
                throw new InvalidCheckpointException(file, tensor, "weight_map must name a shard file, found " + e.getValue());
            }
            resolved.put(tensor, shardPaths.computeIfAbsent(shard, s -> resolveInside(file, folder, tensor, s)));
        }
        return new ShardIndex(file, Collections.unmodifiableMap(resolved));
    }

    private static Path resolveInside(Path file, Path folder, String tensor, String shard) {
        Path path;
        try {
            path = Path.of(shard);
        } catch (InvalidPathException notAPath) {
            throw new InvalidCheckpointException(file, tensor, "shard '" + shard + "' is not a valid file name", notAPath);
        }
        Path inside = folder.resolve(path).normalize();
        if (shard.isEmpty() || path.isAbsolute() || !inside.startsWith(folder) || inside.equals(folder)) {
            throw new InvalidCheckpointException(file, tensor, "shard '" + shard + "' is not a file inside " + folder);
        }
        return inside;
    }
}
