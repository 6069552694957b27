package dev.kiln.quant.int4;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.quant.cpu.Int4GroupWeight;
import dev.kiln.quant.testing.Models;
import java.lang.annotation.Annotation;
import org.junit.jupiter.api.Test;

/**
 * The service: its configured group size and activations, the groups it refuses, and tensors it cannot quantize
 * refused by name.
 */
class Int4QuantizerTest {
    /** A configuration as Declarative Services would hand it over. */
    private static Int4Quantizer.Config config(int groupSize) {
        return config(groupSize, false);
    }

    private static Int4Quantizer.Config config(int groupSize, boolean int8Activations) {
        return new Int4Quantizer.Config() {
            @Override
            public int group$_$size() {
                return groupSize;
            }

            @Override
            public boolean int8$_$activations() {
                return int8Activations;
            }

            @Override
            public Class<? extends Annotation> annotationType() {
                return Int4Quantizer.Config.class;
            }
        };
    }

    @Test
    void int8ActivationsAreUsedWhenConfigured() {
        try (Checkpoint checkpoint = Models.open(Models.fixture("qwen2-tiny"))) {
            for (int groupSize : new int[] {64, 128}) {
                var quantizer = new Int4Quantizer(config(groupSize, true));
                try (var weight = (Int4GroupWeight) quantizer.load(checkpoint, "model.layers.0.mlp.down_proj", Models.backend())) {
                    assertTrue(weight.int8Activations(), "group " + groupSize);
                }
            }
        }
    }

    @Test
    void theConfiguredGroupSizeIsUsed() {
        try (Checkpoint checkpoint = Models.open(Models.fixture("qwen2-tiny"))) {
            for (int groupSize : new int[] {64, 128}) {
                var quantizer = new Int4Quantizer(config(groupSize));
                assertEquals("weight_only_int4", quantizer.name());
                assertTrue(quantizer.supports(Models.backend()));
                assertFalse(quantizer.isPreQuantized(checkpoint));
                try (var weight = (Int4GroupWeight) quantizer.load(checkpoint, "model.layers.0.mlp.down_proj", Models.backend())) {
                    assertEquals("weight_only_int4", weight.format());
                    assertEquals(groupSize, weight.groupSize());
                    assertFalse(weight.int8Activations(), "f32 activations unless configured");
                    assertEquals(64, weight.rows());
                    assertEquals(160, weight.columns());
                }
            }
            assertEquals(Int4Quantizer.DEFAULT_GROUP_SIZE, new Int4Quantizer().groupSize());
        }
    }

    @Test
    void otherGroupSizesAndNonFloatingTensorsAreRefused() {
        for (int groupSize : new int[] {0, 32, 100, 256}) {
            var e = assertThrows(IllegalArgumentException.class, () -> new Int4Quantizer(config(groupSize)));
            assertTrue(e.getMessage().contains("group-size"), e.getMessage());
        }
        try (Checkpoint checkpoint = Models.open(Models.fixture("deepseek-v3-tiny-fp8"))) {
            String prefix = "model.layers.0.mlp.down_proj";
            var e = assertThrows(InvalidCheckpointException.class, () -> new Int4Quantizer().load(checkpoint, prefix, Models.backend()));
            assertEquals(prefix + ".weight", e.field());
            assertTrue(e.getMessage().contains("F8_E4M3"), e.getMessage());
        }
    }
}
