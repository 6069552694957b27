package dev.kiln.quant.int8;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.loader.safetensors.TensorValues;
import dev.kiln.quant.testing.KernelChecks;
import dev.kiln.quant.testing.Models;
import java.lang.reflect.Proxy;
import org.junit.jupiter.api.Test;

/**
 * The service on real checkpoints: a bf16 layer quantized on load to within half a step of its values, the CPU
 * backend required, and tensors that are not floating-point refused by name.
 */
class Int8QuantizerTest {
    private final Int8Quantizer quantizer = new Int8Quantizer();

    @Test
    void quantizesAFixtureLayerOnLoad() {
        try (Checkpoint checkpoint = Models.open(Models.fixture("qwen2-tiny"))) {
            assertEquals("weight_only_int8", quantizer.name());
            assertTrue(quantizer.supports(Models.backend()));
            assertFalse(quantizer.isPreQuantized(checkpoint));
            String prefix = "model.layers.1.mlp.down_proj"; // 64 x 160
            float[] original = TensorValues.toFloats(checkpoint.tensor(prefix + ".weight"));
            try (var weight = quantizer.load(checkpoint, prefix, Models.backend())) {
                assertEquals("weight_only_int8", weight.format());
                assertEquals(64, weight.rows());
                assertEquals(160, weight.columns());
                float[] values = KernelChecks.matrix(weight);
                for (int r = 0; r < 64; r++) {
                    float amax = 0;
                    for (int c = 0; c < 160; c++) amax = Math.max(amax, Math.abs(original[r * 160 + c]));
                    for (int c = 0; c < 160; c++) {
                        double error = Math.abs(values[r * 160 + c] - original[r * 160 + c]);
                        assertTrue(error <= amax / 127 * 0.5001, "[" + r + ", " + c + "]");
                    }
                }
            }
        }
    }

    @Test
    void refusesOtherBackendsAndTensorsThatAreNotFloatingPoint() {
        ComputeBackend gpu = (ComputeBackend) Proxy.newProxyInstance(getClass().getClassLoader(),
                new Class<?>[] {ComputeBackend.class}, (proxy, method, args) -> method.getName().equals("name") ? "cuda" : null);
        assertFalse(quantizer.supports(gpu));
        try (Checkpoint checkpoint = Models.open(Models.fixture("deepseek-v3-tiny-fp8"))) {
            String prefix = "model.layers.0.self_attn.o_proj";
            var e = assertThrows(IllegalArgumentException.class, () -> quantizer.load(checkpoint, prefix, gpu));
            assertTrue(e.getMessage().contains("cuda"), e.getMessage());
            var refused = assertThrows(InvalidCheckpointException.class, () -> quantizer.load(checkpoint, prefix, Models.backend()));
            assertEquals(prefix + ".weight", refused.field());
            assertTrue(refused.getMessage().contains("F8_E4M3"), refused.getMessage());
            var missing = assertThrows(InvalidCheckpointException.class,
                    () -> quantizer.load(checkpoint, "model.layers.0.no_such_proj", Models.backend()));
            assertEquals("model.layers.0.no_such_proj.weight", missing.field());
        }
    }
}
