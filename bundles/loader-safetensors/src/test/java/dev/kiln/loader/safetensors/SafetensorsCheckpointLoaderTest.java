package dev.kiln.loader.safetensors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.api.tensor.DType;
import dev.kiln.loader.safetensors.SafetensorsWriter.TensorSpec;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The forms of location the loader accepts, its configuration parsing, and its service registration. */
class SafetensorsCheckpointLoaderTest {
    private final SafetensorsCheckpointLoader loader = new SafetensorsCheckpointLoader();

    @TempDir
    Path folder;

    private Path weights;
    private Path config;

    @BeforeEach
    void writeCheckpoint() throws IOException {
        weights = folder.resolve("model.safetensors");
        config = folder.resolve("config.json");
        SafetensorsWriter.write(weights, Map.of("w", TensorSpec.ofFloats(DType.BF16, new long[] {2}, new float[] {1, 2})));
        Files.writeString(config, """
                {"model_type": "qwen2", "hidden_size": 64, "rms_norm_eps": 1e-06, "vocab_size": 151936,
                 "rope_scaling": null, "architectures": ["Qwen2ForCausalLM"], "eos_token_id": [1, 2],
                 "quantization_config": {"weight_block_size": [128, 128], "fmt": "e4m3"}}
                """);
    }

    @Test
    void folderAndFileForms() throws IOException {
        assertTrue(loader.canLoad(folder));
        assertTrue(loader.canLoad(weights));
        try (Checkpoint fromFolder = loader.open(folder); Checkpoint fromFile = loader.open(weights)) {
            assertEquals(folder, fromFolder.location());
            assertEquals(weights, fromFile.location());
            assertEquals(fromFolder.tensorNames(), fromFile.tensorNames());
            assertEquals(4, fromFile.dataBytes());
        }
        Files.delete(config);
        assertFalse(loader.canLoad(folder));
        assertFalse(loader.canLoad(weights));
        assertFalse(loader.canLoad(folder.resolve("absent")));
    }

    @Test
    void configKeepsJsonTypes() throws IOException {
        try (Checkpoint checkpoint = loader.open(folder)) {
            ModelConfig c = checkpoint.config();
            assertEquals(config, c.source());
            assertEquals("qwen2", c.modelType());
            assertEquals(64, c.hiddenSize());
            assertEquals(151936L, c.get("vocab_size").orElseThrow());
            assertEquals(1e-6, c.rmsNormEps());
            assertFalse(c.has("rope_scaling"));
            assertEquals(List.of("Qwen2ForCausalLM"), c.architectures());
            assertEquals(List.of(1L, 2L), c.get("eos_token_id").orElseThrow());
            assertEquals(List.of(128L, 128L), c.getObject("quantization_config").orElseThrow().get("weight_block_size"));
        }
    }

    @Test
    void missingOrMalformedConfigIsRefusedNamingIt() throws IOException {
        Files.delete(config);
        assertEquals(config, assertThrows(InvalidCheckpointException.class, () -> loader.open(folder)).file());
        assertEquals(config, assertThrows(InvalidCheckpointException.class, () -> loader.open(weights)).file());
        for (String json : List.of("", "{", "[]", "42", "{\"a\": 1, \"a\": 2}", "{\"a\": NaN}", "{} {}", "{'a': 1}")) {
            Files.writeString(config, json);
            InvalidCheckpointException e = assertThrows(InvalidCheckpointException.class, () -> loader.open(folder), json);
            assertEquals(config, e.file(), json);
        }
        Files.write(config, new byte[] {'{', '"', (byte) 0xC3, '"', ':', '1', '}'});
        assertTrue(assertThrows(InvalidCheckpointException.class, () -> loader.open(folder)).getMessage().contains("UTF-8"));
        Files.delete(config);
        Files.createDirectory(config);
        assertEquals(config, assertThrows(InvalidCheckpointException.class, () -> loader.open(folder)).file());
    }

    @Test
    void otherLocationsAreRefused() throws IOException {
        assertThrows(NoSuchFileException.class, () -> loader.open(folder.resolve("absent.safetensors")));
        Path text = Files.writeString(folder.resolve("notes.txt"), "hello");
        assertFalse(loader.canLoad(text));
        assertEquals(text, assertThrows(InvalidCheckpointException.class, () -> loader.open(text)).file());
        Files.delete(weights);
        assertEquals(folder, assertThrows(InvalidCheckpointException.class, () -> loader.open(folder)).file());
    }

    @Test
    void registersAsTheSafetensorsLoader() throws IOException {
        String descriptor = "OSGI-INF/" + SafetensorsCheckpointLoader.class.getName() + ".xml";
        try (InputStream in = SafetensorsCheckpointLoader.class.getClassLoader().getResourceAsStream(descriptor)) {
            assertNotNull(in, descriptor + " was not generated");
            String xml = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(xml.contains("<provide interface=\"dev.kiln.api.checkpoint.CheckpointLoader\"/>"), xml);
            assertTrue(xml.contains("name=\"kiln.name\"") && xml.contains("value=\"safetensors\""), xml);
        }
    }
}
