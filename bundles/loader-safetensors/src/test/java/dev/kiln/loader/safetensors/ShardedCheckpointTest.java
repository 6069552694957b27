package dev.kiln.loader.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.loader.safetensors.SafetensorsWriter.TensorSpec;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A checkpoint split into two shards with an index, made from a fixture, and the ways such an index can lie. */
class ShardedCheckpointTest {
    private static final String SHARD_1 = "model-00001-of-00002.safetensors";
    private static final String SHARD_2 = "model-00002-of-00002.safetensors";

    private final SafetensorsCheckpointLoader loader = new SafetensorsCheckpointLoader();
    private final Path source = Fixtures.model("qwen2-tiny");

    @TempDir
    Path folder;

    private List<String> firstHalf;
    private List<String> secondHalf;

    @BeforeEach
    void splitFixture() throws IOException {
        Files.copy(source.resolve("config.json"), folder.resolve("config.json"));
        try (SafetensorsFile original = SafetensorsFile.open(source.resolve("model.safetensors"))) {
            List<String> names = new ArrayList<>(original.tensors().keySet());
            firstHalf = names.subList(0, names.size() / 2);
            secondHalf = names.subList(names.size() / 2, names.size());
            writeShard(original, SHARD_1, firstHalf);
            writeShard(original, SHARD_2, secondHalf);
        }
        writeIndex(weightMap -> {});
    }

    @Test
    void shardedFolderHoldsTheSameTensorsAsTheSingleFile() throws IOException {
        assertTrue(loader.canLoad(folder));
        try (Checkpoint sharded = loader.open(folder); Checkpoint single = loader.open(source)) {
            assertEquals(single.tensorNames(), sharded.tensorNames());
            assertEquals(single.dataBytes(), sharded.dataBytes());
            for (String name : single.tensorNames()) {
                CheckpointTensor expected = single.tensor(name);
                CheckpointTensor actual = sharded.tensor(name);
                assertEquals(expected.dtype(), actual.dtype(), name);
                assertArrayEquals(expected.shape(), actual.shape(), name);
                assertEquals(-1, expected.data().mismatch(actual.data()), name);
                String shard = firstHalf.contains(name) ? SHARD_1 : SHARD_2;
                assertEquals(shard, actual.file().getFileName().toString(), name);
            }
            assertEquals(single.config().json(), sharded.config().json());
        }
    }

    @Test
    void indexFileCanBeNamedDirectly() throws IOException {
        Path index = folder.resolve("model.safetensors.index.json");
        assertTrue(loader.canLoad(index));
        try (Checkpoint sharded = loader.open(index)) {
            assertEquals(index, sharded.location());
            assertEquals(firstHalf.size() + secondHalf.size(), sharded.tensorNames().size());
        }
    }

    @Test
    void missingShardIsNamed() throws IOException {
        writeIndex(map -> map.addProperty(firstHalf.get(0), "model-00003-of-00002.safetensors"));
        InvalidCheckpointException e = refused();
        assertEquals("model.safetensors.index.json", e.file().getFileName().toString());
        assertTrue(e.getMessage().contains("model-00003-of-00002.safetensors"), e.getMessage());
    }

    @Test
    void tensorListedInTheWrongShardIsNamed() throws IOException {
        String moved = firstHalf.get(1);
        writeIndex(map -> map.addProperty(moved, SHARD_2));
        InvalidCheckpointException e = refused();
        assertEquals(moved, e.field());
        assertTrue(e.getMessage().contains(SHARD_2), e.getMessage());
    }

    @Test
    void tensorListedButInNoShardIsNamed() throws IOException {
        writeIndex(map -> map.addProperty("model.layers.9.extra.weight", SHARD_1));
        assertEquals("model.layers.9.extra.weight", refused().field());
    }

    @Test
    void tensorInTwoShardsIsNamed() throws IOException {
        String duplicated = firstHalf.get(0);
        try (SafetensorsFile original = SafetensorsFile.open(source.resolve("model.safetensors"))) {
            List<String> withDuplicate = new ArrayList<>(secondHalf);
            withDuplicate.add(duplicated);
            writeShard(original, SHARD_2, withDuplicate);
        }
        InvalidCheckpointException e = refused();
        assertEquals(duplicated, e.field());
        assertTrue(e.getMessage().contains(SHARD_1) && e.getMessage().contains(SHARD_2), e.getMessage());
    }

    @Test
    void shardOutsideTheFolderIsRefused() throws IOException {
        writeIndex(map -> map.addProperty(firstHalf.get(0), "../" + SHARD_1));
        assertTrue(refused().getMessage().contains("not a file inside"));
        writeIndex(map -> map.addProperty(firstHalf.get(0), folder.resolve(SHARD_1).toAbsolutePath().toString()));
        assertTrue(refused().getMessage().contains("not a file inside"));
    }

    @Test
    void malformedIndexIsRefused() throws IOException {
        Path index = folder.resolve("model.safetensors.index.json");
        for (String json : List.of("{}", "{\"weight_map\": []}", "{\"weight_map\": {}}",
                "{\"weight_map\": {\"a\": 3}}", "{\"weight_map\": {\"a\": \"x\", \"a\": \"y\"}}", "[1]", "{", "")) {
            Files.writeString(index, json);
            InvalidCheckpointException e = refused();
            assertEquals(index, e.file(), json);
        }
    }

    @Test
    void corruptShardIsNamed() throws IOException {
        Files.write(folder.resolve(SHARD_2), new byte[] {1, 2, 3});
        assertEquals(folder.resolve(SHARD_2), refused().file().toAbsolutePath());
    }

    @Test
    void folderWithoutWeightsIsRefused() throws IOException {
        Files.delete(folder.resolve("model.safetensors.index.json"));
        assertEquals(folder, refused().file());
    }

    private InvalidCheckpointException refused() {
        return assertThrows(InvalidCheckpointException.class, () -> loader.open(folder).close());
    }

    private void writeShard(SafetensorsFile original, String name, List<String> tensors) throws IOException {
        Map<String, TensorSpec> specs = new LinkedHashMap<>();
        for (String tensor : tensors) specs.put(tensor, TensorSpec.copyOf(original.tensor(tensor)));
        SafetensorsWriter.write(folder.resolve(name), specs);
    }

    private void writeIndex(Consumer<JsonObject> edit) throws IOException {
        JsonObject weightMap = new JsonObject();
        firstHalf.forEach(name -> weightMap.addProperty(name, SHARD_1));
        secondHalf.forEach(name -> weightMap.addProperty(name, SHARD_2));
        edit.accept(weightMap);
        JsonObject index = new JsonObject();
        JsonObject metadata = new JsonObject();
        metadata.addProperty("total_size", 0);
        index.add("metadata", metadata);
        index.add("weight_map", weightMap);
        Files.writeString(folder.resolve("model.safetensors.index.json"), index.toString());
    }
}
