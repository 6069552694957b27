package dev.kiln.quant.fp8;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.api.tensor.DType;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.backend.cpu.CpuTensor;
import dev.kiln.loader.safetensors.SafetensorsCheckpointLoader;
import dev.kiln.loader.safetensors.TensorValues;
import java.io.IOException;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * The quantizer on the DeepSeek fixtures: the FP8 checkpoint's block weights read in place and equal to
 * {@code code · weight_scale_inv} (the reference's dequantization), its bf16 layers kept as stored, a bf16
 * checkpoint quantized on load within e4m3's rounding, and inconsistent checkpoints refused by name.
 */
class Fp8QuantizerTest {
    private static final CpuBackend BACKEND = new CpuBackend(2);
    private final Fp8Quantizer quantizer = new Fp8Quantizer();

    @AfterAll
    static void stop() {
        BACKEND.shutdown();
    }

    private static Checkpoint open(String fixture) throws IOException {
        String root = Objects.requireNonNull(System.getProperty("kiln.fixtures"), "kiln.fixtures");
        return new SafetensorsCheckpointLoader().open(Path.of(root, "models", fixture));
    }

    /** The weight's matrix, read through its own kernel: the rows of the identity times Wᵀ. */
    private static float[] matrix(Weight weight) {
        int n = weight.columns();
        CpuTensor identity = CpuTensor.allocate(DType.F32, n, n);
        for (int i = 0; i < n; i++) identity.array()[i * n + i] = 1f;
        CpuTensor transposed = CpuTensor.allocate(DType.F32, n, weight.rows());
        weight.multiply(identity, transposed);
        float[] out = new float[weight.rows() * n];
        for (int c = 0; c < n; c++) {
            for (int r = 0; r < weight.rows(); r++) out[r * n + c] = transposed.array()[c * weight.rows() + r];
        }
        return out;
    }

    @Test
    void preQuantizedBlocksAreReadInPlaceAndDequantizeLikeTheReference() throws IOException {
        try (Checkpoint checkpoint = open("deepseek-v3-tiny-fp8")) {
            assertTrue(quantizer.isPreQuantized(checkpoint));
            assertTrue(quantizer.supports(BACKEND));
            // 256 x 64 with scales [2, 1]; 320 x 272 with partial blocks in both directions.
            for (String prefix : List.of("model.layers.0.self_attn.kv_b_proj", "model.layers.0.mlp.down_proj",
                    "model.layers.1.mlp.experts.3.gate_proj")) {
                CheckpointTensor codes = checkpoint.tensor(prefix + ".weight");
                float[] scales = TensorValues.toFloats(checkpoint.tensor(prefix + ".weight_scale_inv"));
                float[] values = TensorValues.toFloats(codes);
                int rows = codes.rows(), columns = codes.columns(), columnBlocks = (columns + 127) / 128;
                Weight weight = quantizer.load(checkpoint, prefix, BACKEND);
                assertEquals("fp8", weight.format());
                assertEquals((long) rows * columns + 4L * scales.length, weight.bytes());
                float[] actual = matrix(weight);
                for (int r = 0; r < rows; r++) {
                    for (int c = 0; c < columns; c++) {
                        float expected = values[r * columns + c] * scales[(r / 128) * columnBlocks + c / 128];
                        assertEquals(expected, actual[r * columns + c], prefix + "[" + r + ", " + c + "]");
                    }
                }
            }
            Weight kept = quantizer.load(checkpoint, "model.layers.3.eh_proj", BACKEND);
            assertEquals("bf16", kept.format(), "a layer the checkpoint keeps in bf16 stays bf16");
        }
    }

    @Test
    void aFloatingPointCheckpointIsQuantizedOnLoadWithinE4m3Rounding() throws IOException {
        try (Checkpoint checkpoint = open("deepseek-v3-tiny")) {
            assertFalse(quantizer.isPreQuantized(checkpoint));
            String prefix = "model.layers.0.mlp.down_proj"; // 256 x 384: three column blocks, two row blocks
            float[] original = TensorValues.toFloats(checkpoint.tensor(prefix + ".weight"));
            Weight weight = quantizer.load(checkpoint, prefix, BACKEND);
            int rows = weight.rows(), columns = weight.columns();
            assertEquals("fp8", weight.format());
            assertEquals((long) rows * columns + 4L * 2 * 3, weight.bytes());
            float[] actual = matrix(weight);
            for (int rb = 0; rb < 2; rb++) {
                for (int cb = 0; cb < 3; cb++) {
                    float amax = 0;
                    for (int r = rb * 128; r < Math.min(rows, rb * 128 + 128); r++) {
                        for (int c = cb * 128; c < Math.min(columns, cb * 128 + 128); c++) {
                            amax = Math.max(amax, Math.abs(original[r * columns + c]));
                        }
                    }
                    float scale = amax / 448f;
                    float largest = 0;
                    for (int r = rb * 128; r < Math.min(rows, rb * 128 + 128); r++) {
                        for (int c = cb * 128; c < Math.min(columns, cb * 128 + 128); c++) {
                            float w = original[r * columns + c];
                            float q = actual[r * columns + c];
                            largest = Math.max(largest, Math.abs(q));
                            // Half a unit in the last place: 2^-4 relative for normals, 2^-10 · scale below 2^-6.
                            double bound = Math.max(Math.abs(w) * 0x1p-4, scale * 0x1p-10) * 1.0001;
                            assertTrue(Math.abs(q - w) <= bound, "[" + r + ", " + c + "]: " + w + " became " + q);
                        }
                    }
                    assertEquals(amax, largest, amax * 1e-6, "the block's largest magnitude maps to 448 exactly");
                }
            }
        }
    }

    @Test
    void missingOrMisshapenScalesAndUnsupportedFormatsAreRefusedByName() throws IOException {
        String prefix = "model.layers.0.self_attn.o_proj";
        try (Checkpoint checkpoint = open("deepseek-v3-tiny-fp8")) {
            var withoutScale = new Edited(checkpoint, Map.of(), Set.of(prefix + ".weight_scale_inv"));
            var e = assertThrows(InvalidCheckpointException.class, () -> quantizer.load(withoutScale, prefix, BACKEND));
            assertEquals(prefix + ".weight_scale_inv", e.field());

            CheckpointTensor scale = checkpoint.tensor(prefix + ".weight_scale_inv");
            var misshapen = new Edited(checkpoint, Map.of(scale.name(), new CheckpointTensor(scale.name(), scale.dtype(),
                    new long[] {1, 3}, scale.data().asSlice(0, 12), scale.file())), Set.of());
            e = assertThrows(InvalidCheckpointException.class, () -> quantizer.load(misshapen, prefix, BACKEND));
            assertEquals(prefix + ".weight_scale_inv", e.field());

            for (var edit : List.of(Map.<String, Object>of("quant_method", "fp8", "fmt", "e4m3"),
                    Map.<String, Object>of("quant_method", "fp8", "fmt", "e5m2", "weight_block_size", List.of(128, 128)))) {
                var unsupported = new Edited(checkpoint, Map.of(), Set.of()).configure("quantization_config", edit);
                e = assertThrows(InvalidCheckpointException.class, () -> quantizer.load(unsupported, prefix, BACKEND));
                assertTrue(e.field().startsWith("quantization_config."), e.field());
            }
        }
    }

    /** A checkpoint seen with tensors replaced or hidden and configuration fields changed. */
    private static final class Edited implements Checkpoint {
        private final Checkpoint original;
        private final Map<String, CheckpointTensor> replaced;
        private final Set<String> removed;
        private ModelConfig config;

        Edited(Checkpoint original, Map<String, CheckpointTensor> replaced, Set<String> removed) {
            this.original = original;
            this.replaced = new HashMap<>(replaced);
            this.removed = removed;
            this.config = original.config();
        }

        Edited configure(String field, Object value) {
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
            return original.tensorNames();
        }

        @Override
        public Optional<CheckpointTensor> find(String name) {
            if (removed.contains(name)) return Optional.empty();
            return replaced.containsKey(name) ? Optional.of(replaced.get(name)) : original.find(name);
        }

        @Override
        public long dataBytes() {
            return original.dataBytes();
        }

        @Override
        public void close() {}
    }
}
