package dev.kiln.quant.awq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.quant.testing.Models;
import java.io.IOException;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The service on an AutoAWQ checkpoint of the qwen2-tiny fixture: it is recognised as pre-quantized, a layer left in
 * floating point is kept as stored, and what Kiln cannot read is refused naming the field or tensor: other bit
 * widths, packings and symmetric AWQ, group sizes that do not divide the layer, missing or misshapen tensors, and
 * floating-point checkpoints (AWQ needs calibration; weight_only_int4 is named instead).
 */
class AwqQuantizerTest {
    @TempDir
    static Path folder;
    private final AwqQuantizer quantizer = new AwqQuantizer();

    @BeforeAll
    static void writeCheckpoint() throws IOException {
        AutoAwq.write(Models.fixture("qwen2-tiny"), folder, 32);
    }

    @Test
    void readsTheCheckpointItDescribes() {
        try (Checkpoint awq = Models.open(folder); Checkpoint dense = Models.open(Models.fixture("qwen2-tiny"))) {
            assertEquals("awq", quantizer.name());
            assertTrue(quantizer.supports(Models.backend()));
            assertTrue(quantizer.isPreQuantized(awq));
            assertFalse(quantizer.isPreQuantized(dense));
            try (var weight = quantizer.load(awq, "model.layers.0.mlp.up_proj", Models.backend())) {
                assertEquals("awq", weight.format());
                assertEquals(160, weight.rows());
                assertEquals(64, weight.columns());
            }
            // modules_to_not_convert: the layer stored as a floating-point weight stays as it is.
            String prefix = "model.layers.0.mlp.up_proj";
            var kept = new Edited(awq).replace(dense.tensor(prefix + ".weight")).hide(prefix + ".qweight");
            try (var weight = quantizer.load(kept, prefix, Models.backend())) {
                assertEquals("bf16", weight.format());
            }
            var e = assertThrows(InvalidCheckpointException.class, () -> quantizer.load(dense, prefix, Models.backend()));
            assertTrue(e.getMessage().contains("weight_only_int4"), e.getMessage());
        }
    }

    @Test
    void whatCannotBeReadIsRefusedByName() {
        String prefix = "model.layers.1.self_attn.q_proj";
        try (Checkpoint awq = Models.open(folder)) {
            Map<String, Object> base = awq.config().getObject("quantization_config").orElseThrow();
            for (var edit : Map.of("bits", 8, "version", "gemv", "zero_point", false, "group_size", 0).entrySet()) {
                Map<String, Object> settings = new LinkedHashMap<>(base);
                settings.put(edit.getKey(), edit.getValue());
                var edited = new Edited(awq).configure(settings);
                var e = assertThrows(InvalidCheckpointException.class, () -> quantizer.load(edited, prefix, Models.backend()));
                assertEquals("quantization_config." + edit.getKey(), e.field(), e.getMessage());
            }
            Map<String, Object> settings = new LinkedHashMap<>(base);
            settings.put("group_size", 48); // does not divide 64 input features
            var e = assertThrows(InvalidCheckpointException.class,
                    () -> quantizer.load(new Edited(awq).configure(settings), prefix, Models.backend()));
            assertTrue(e.getMessage().contains("group size 48"), e.getMessage());

            var withoutZeros = new Edited(awq).hide(prefix + ".qzeros");
            e = assertThrows(InvalidCheckpointException.class, () -> quantizer.load(withoutZeros, prefix, Models.backend()));
            assertEquals(prefix + ".qzeros", e.field());

            CheckpointTensor scales = awq.tensor(prefix + ".scales");
            var misshapen = new Edited(awq).replace(new CheckpointTensor(scales.name(), scales.dtype(),
                    new long[] {1, 2 * scales.columns()}, scales.data(), scales.file()));
            e = assertThrows(InvalidCheckpointException.class, () -> quantizer.load(misshapen, prefix, Models.backend()));
            assertTrue(e.getMessage().contains(prefix + ".scales"), e.getMessage());

            var neither = new Edited(awq).hide(prefix + ".qweight");
            e = assertThrows(InvalidCheckpointException.class, () -> quantizer.load(neither, prefix, Models.backend()));
            assertEquals(prefix + ".qweight", e.field());
        }
    }

    /** A checkpoint seen with tensors replaced or hidden and its quantization_config changed. */
    private static final class Edited implements Checkpoint {
        private final Checkpoint original;
        private final Map<String, CheckpointTensor> replaced = new HashMap<>();
        private final Set<String> hidden = new java.util.HashSet<>();
        private ModelConfig config;

        Edited(Checkpoint original) {
            this.original = original;
            this.config = original.config();
        }

        Edited replace(CheckpointTensor tensor) {
            replaced.put(tensor.name(), tensor);
            return this;
        }

        Edited hide(String name) {
            hidden.add(name);
            return this;
        }

        Edited configure(Map<String, Object> quantization) {
            Map<String, Object> json = new LinkedHashMap<>(config.json());
            json.put("quantization_config", quantization);
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
            if (hidden.contains(name)) return Optional.empty();
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
