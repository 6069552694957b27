package dev.kiln.loader.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.api.tensor.DType;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Every reference checkpoint opens, and what the loader exposes agrees with an independent reading of the file. */
class FixtureCheckpointTest {
    private final SafetensorsCheckpointLoader loader = new SafetensorsCheckpointLoader();

    static List<Path> models() throws IOException {
        return Fixtures.models();
    }

    @ParameterizedTest
    @MethodSource("models")
    void modelTensorsMatchTheRawFile(Path folder) throws IOException {
        RawSafetensors raw = RawSafetensors.read(folder.resolve("model.safetensors"));
        Map<String, RawSafetensors.Tensor> expected = raw.tensors();
        assertTrue(loader.canLoad(folder));
        try (Checkpoint checkpoint = loader.open(folder)) {
            assertEquals(folder, checkpoint.location());
            assertEquals(expected.keySet(), checkpoint.tensorNames());
            long bytes = 0;
            for (Map.Entry<String, RawSafetensors.Tensor> e : expected.entrySet()) {
                CheckpointTensor tensor = checkpoint.tensor(e.getKey());
                assertSameTensor(e.getKey(), e.getValue(), tensor);
                bytes += e.getValue().data().length;
            }
            assertEquals(bytes, checkpoint.dataBytes());
            assertFalse(checkpoint.find("no.such.tensor").isPresent());
        }
    }

    @ParameterizedTest
    @MethodSource("models")
    void configIsParsedAndAgreesWithTheTensors(Path folder) throws IOException {
        JsonObject json = JsonParser.parseString(Files.readString(folder.resolve("config.json"))).getAsJsonObject();
        try (Checkpoint checkpoint = loader.open(folder)) {
            ModelConfig config = checkpoint.config();
            assertEquals(folder.resolve("config.json"), config.source());
            assertEquals(json.get("model_type").getAsString(), config.modelType());
            assertEquals(json.get("hidden_size").getAsInt(), config.hiddenSize());
            assertEquals(json.get("num_hidden_layers").getAsInt(), config.numLayers());
            assertEquals(json.get("vocab_size").getAsInt(), config.vocabSize());
            CheckpointTensor embedding = checkpoint.tensor("model.embed_tokens.weight");
            assertArrayEquals(new long[] {config.vocabSize(), config.hiddenSize()}, embedding.shape());
            assertTrue(checkpoint.tensorNames().contains("model.layers." + (config.numLayers() - 1) + ".input_layernorm.weight"));
        }
    }

    @ParameterizedTest
    @MethodSource("models")
    void referenceTensorsOpenWithoutAConfig(Path folder) throws IOException {
        Path file = folder.resolve("reference.safetensors");
        Map<String, RawSafetensors.Tensor> expected = RawSafetensors.read(file).tensors();
        int vocab = JsonParser.parseString(Files.readString(folder.resolve("config.json")))
                .getAsJsonObject().get("vocab_size").getAsInt();
        try (SafetensorsFile reference = SafetensorsFile.open(file)) {
            assertEquals(expected.keySet(), reference.tensors().keySet());
            for (Map.Entry<String, RawSafetensors.Tensor> e : expected.entrySet()) {
                assertSameTensor(e.getKey(), e.getValue(), reference.tensor(e.getKey()));
            }
            for (int prompt = 0; prompt < 2; prompt++) {
                int[] ids = TensorValues.toInts(reference.tensor("input_ids_" + prompt));
                CheckpointTensor logits = reference.tensor("logits_" + prompt);
                assertArrayEquals(new long[] {ids.length, vocab}, logits.shape());
                for (int id : ids) assertTrue(id >= 0 && id < vocab, "token id " + id + " outside the vocabulary");
                assertEquals(ids.length * (long) vocab, TensorValues.toFloats(logits).length);
            }
        }
    }

    /** The FP8 fixture stores 128x128-block scales; the shapes the loader reports must show that layout. */
    @Test
    void fp8WeightsComeWithBlockScales() throws IOException {
        try (Checkpoint checkpoint = loader.open(Fixtures.model("deepseek-v3-tiny-fp8"))) {
            int fp8 = 0;
            for (String name : checkpoint.tensorNames()) {
                CheckpointTensor weight = checkpoint.tensor(name);
                if (weight.dtype() != DType.F8_E4M3) continue;
                fp8++;
                CheckpointTensor scale = checkpoint.tensor(name + "_scale_inv");
                assertArrayEquals(new long[] {(weight.rows() + 127) / 128, (weight.columns() + 127) / 128}, scale.shape(), name);
                for (float s : TensorValues.toFloats(scale)) assertTrue(s > 0 && Float.isFinite(s), name + " scale " + s);
            }
            assertTrue(fp8 > 10, "expected many FP8 weights, found " + fp8);
        }
    }

    private static void assertSameTensor(String name, RawSafetensors.Tensor expected, CheckpointTensor actual) {
        assertEquals(name, actual.name());
        assertEquals(expected.dtype(), actual.dtype().name(), name);
        assertArrayEquals(expected.shape(), actual.shape(), name);
        assertEquals(-1, MemorySegment.ofArray(expected.data()).mismatch(actual.data()), name + " bytes differ");
        switch (expected.dtype()) {
            case "F32", "BF16", "F16", "F8_E4M3" -> assertBitwiseEqual(name,
                    HandDecoding.decode(expected.dtype(), expected.data()), TensorValues.toFloats(actual));
            case "I64", "I32" -> assertArrayEquals(HandDecoding.decodeIntegers(expected.dtype(), expected.data()),
                    TensorValues.toLongs(actual), name);
            default -> throw new AssertionError(name + ": fixture dtype " + expected.dtype() + " not covered");
        }
    }

    static void assertBitwiseEqual(String name, float[] expected, float[] actual) {
        assertEquals(expected.length, actual.length, name);
        for (int i = 0; i < expected.length; i++) {
            if (Float.floatToIntBits(expected[i]) != Float.floatToIntBits(actual[i])) {
                throw new AssertionError(name + "[" + i + "]: expected " + expected[i] + " but was " + actual[i]);
            }
        }
    }
}
