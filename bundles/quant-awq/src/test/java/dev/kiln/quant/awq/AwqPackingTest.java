package dev.kiln.quant.awq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.quant.awq.internal.AwqSettings;
import dev.kiln.quant.awq.internal.AwqUnpacking;
import dev.kiln.quant.cpu.Int4GroupWeight;
import dev.kiln.quant.cpu.KernelScratch;
import dev.kiln.quant.testing.KernelChecks;
import dev.kiln.quant.testing.Models;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * AutoAWQ's GEMM packing: the generator places each code where AutoAWQ's {@code order_map} puts it, AutoAWQ's own
 * unpacking (written out independently, in float64) recovers what was quantized, and Kiln's loader turns the packed
 * tensors into a weight whose every kernel path computes products with exactly those dequantized values.
 */
class AwqPackingTest {
    @Test
    void codesArePlacedInAutoAwqsInterleavedOrder() {
        // Eight outputs whose codes are their own index in input column 0: nibble i must hold output order_map[i].
        int in = 32, out = 8;
        float[] weight = new float[out * in];
        for (int o = 0; o < out; o++) {
            for (int k = 0; k < in; k++) weight[o * in + k] = k == 0 ? o : (k % 2 == 0 ? 0 : 15);
        }
        AutoAwq.Packed packed = AutoAwq.pack(weight, out, in, 32);
        for (int o = 0; o < out; o++) {
            assertEquals(0, packed.zeros()[o][0]);
            assertEquals(o, packed.intweight()[o][0], "output " + o + ": scale 1 keeps the values as codes");
        }
        assertEquals(0x75316420, packed.qweight()[0], "nibbles 0..7 hold outputs 0, 2, 4, 6, 1, 3, 5, 7");
    }

    @ParameterizedTest
    @CsvSource({"24, 192, 64", "16, 256, 128", "40, 96, 32", "8, 64, -1"})
    void theLoaderReadsWhatAutoAwqPacked(int out, int in, int configuredGroup) {
        int groupSize = configuredGroup == -1 ? in : configuredGroup;
        Random random = new Random(out * 7L + in);
        float[] weight = new float[out * in];
        for (int i = 0; i < weight.length; i++) weight[i] = (float) (random.nextGaussian() * 0.03 + (i % 5 == 0 ? 0.01 : 0));
        AutoAwq.Packed packed = AutoAwq.pack(weight, out, in, groupSize);

        double[] dense = AutoAwq.dequantize(packed.qweight(), packed.qzeros(), packed.scales(), in, out, groupSize);
        double[] magnitude = new double[out * in];
        for (int o = 0; o < out; o++) {
            for (int k = 0; k < in; k++) {
                int g = k / groupSize;
                double s = Float.float16ToFloat(packed.scales()[g * out + o]);
                int q = packed.intweight()[o][k], z = packed.zeros()[o][g];
                assertEquals((q - z) * s, dense[o * in + k], "[" + o + ", " + k + "]: AutoAWQ's unpacking inverts its packing");
                // Min/max zero-point quantization: within half a step, plus fp16 rounding of the weight and the scale.
                assertTrue(Math.abs(dense[o * in + k] - weight[o * in + k]) <= 0.5 * s + 2e-3 * Math.abs(weight[o * in + k]) + 1e-7,
                        "[" + o + ", " + k + "]");
                magnitude[o * in + k] = (q + z) * s;
            }
        }

        Path file = Path.of("awq.safetensors");
        var qweight = new CheckpointTensor("l.qweight", DType.I32, new long[] {in, out / 8}, MemorySegment.ofArray(packed.qweight()), file);
        var qzeros = new CheckpointTensor("l.qzeros", DType.I32, new long[] {in / groupSize, out / 8}, MemorySegment.ofArray(packed.qzeros()), file);
        var scales = new CheckpointTensor("l.scales", DType.F16, new long[] {in / groupSize, out}, MemorySegment.ofArray(packed.scales()), file);
        var pool = Models.backend().pool();
        try (Int4GroupWeight loaded = AwqUnpacking.unpack(qweight, qzeros, scales, new AwqSettings(configuredGroup), pool,
                KernelScratch.of(pool))) {
            assertEquals("awq", loaded.format());
            assertEquals(out, loaded.rows());
            assertEquals(in, loaded.columns());
            assertEquals(groupSize, loaded.groupSize());
            KernelChecks.assertProducts(loaded, dense, magnitude, random);
        }
    }
}
