package dev.kiln.quant.awq;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.ToNumberPolicy;
import com.google.gson.reflect.TypeToken;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.loader.safetensors.SafetensorsWriter;
import dev.kiln.loader.safetensors.SafetensorsWriter.TensorSpec;
import dev.kiln.loader.safetensors.TensorValues;
import dev.kiln.quant.testing.Models;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeSet;

/**
 * Writes AWQ checkpoints the way AutoAWQ (casper-hansen/AutoAWQ) does, from a floating-point checkpoint, so that the
 * loader is tested on the layout AutoAWQ produces rather than on one written to fit it.
 *
 * <p>What AutoAWQ does, and what is reproduced here step by step, in fp16 arithmetic (it runs each layer with
 * {@code .half()}; every fp16 operation is computed in f32 and rounded to fp16):
 * <ol>
 *   <li>{@code AwqQuantizer.pseudo_quantize_tensor} with {@code zero_point=True}, per output row and group of
 *       {@code group_size} input columns: {@code scales = clamp(max - min, min=1e-5) / 15},
 *       {@code zeros = clamp(-round(min / scales), 0, 15)},
 *       {@code w = (clamp(round(w / scales) + zeros, 0, 15) - zeros) · scales};</li>
 *   <li>{@code _apply_quant} for {@code version="gemm"} transposes scales and zeros to {@code [in / group, out]};</li>
 *   <li>{@code WQLinear_GEMM.from_linear}: {@code intweight = round((w + zeros·scales) / scales)} per input column,
 *       transposed to {@code [in, out]}; {@code qweight[:, col] |= intweight[:, col·8 + order_map[i]] << 4i} with
 *       {@code order_map = [0, 2, 4, 6, 1, 3, 5, 7]}; {@code qzeros} packed the same way from the zeros; scales
 *       stored as fp16; {@code qweight}, {@code qzeros} int32.</li>
 * </ol>
 * AWQ's activation-aware scale search and clipping (which need calibration data) change which weights get quantized,
 * not how they are packed; they are left out, so the packed weights are plain min/max zero-point quantization.
 * Every linear layer of the decoder layers is quantized, as AutoAWQ does; the embedding, the routers, the norms,
 * the output head and a DeepSeek MTP module (stored after the decoder layers, which transformers' model, and so
 * AutoAWQ, never loads) stay as stored.
 */
final class AutoAwq {
    /** {@code order_map} of {@code from_linear}. */
    static final int[] ORDER_MAP = {0, 2, 4, 6, 1, 3, 5, 7};

    private AutoAwq() {}

    /** One layer as AutoAWQ stores it, and the integers it computed on the way. */
    record Packed(int in, int out, int groupSize, int[] qweight, int[] qzeros, short[] scales, int[][] intweight, int[][] zeros) {}

    /** Rounds to fp16 and back, as a PyTorch half operation does with its f32 result. */
    static float half(float x) {
        return Float.float16ToFloat(Float.floatToFloat16(x));
    }

    /** Quantizes and packs a weight {@code [out, in]} (row-major) exactly as AutoAWQ does. */
    static Packed pack(float[] weight, int out, int in, int groupSize) {
        if (in % groupSize != 0 || out % 8 != 0) throw new IllegalArgumentException(out + "x" + in + " cannot be packed in groups of " + groupSize);
        int groups = in / groupSize;
        float clampMin = half(1e-5f);
        float[][] scales = new float[out][groups];
        int[][] zeros = new int[out][groups];
        float[] fake = new float[out * in];
        for (int o = 0; o < out; o++) {
            for (int g = 0; g < groups; g++) {
                float max = Float.NEGATIVE_INFINITY, min = Float.POSITIVE_INFINITY;
                for (int k = g * groupSize; k < (g + 1) * groupSize; k++) {
                    float w = half(weight[o * in + k]);
                    max = Math.max(max, w);
                    min = Math.min(min, w);
                }
                float s = half(Math.max(half(max - min), clampMin) / 15f);
                int z = (int) Math.max(0, Math.min(15, -Math.rint(half(min / s))));
                scales[o][g] = s;
                zeros[o][g] = z;
                for (int k = g * groupSize; k < (g + 1) * groupSize; k++) {
                    double q = Math.max(0, Math.min(15, Math.rint(half(half(weight[o * in + k]) / s)) + z));
                    fake[o * in + k] = half((float) (q - z) * s);
                }
            }
        }
        int[][] intweight = new int[out][in];
        for (int k = 0; k < in; k++) {
            int g = k / groupSize;
            for (int o = 0; o < out; o++) {
                float scaleZero = half(zeros[o][g] * scales[o][g]);
                intweight[o][k] = (int) Math.rint(half(half(fake[o * in + k] + scaleZero) / scales[o][g]));
                if (intweight[o][k] < 0 || intweight[o][k] > 15) throw new IllegalStateException("code " + intweight[o][k]);
            }
        }
        int packedColumns = out / 8;
        int[] qweight = new int[in * packedColumns];
        int[] qzeros = new int[groups * packedColumns];
        short[] halfScales = new short[groups * out];
        for (int col = 0; col < packedColumns; col++) {
            for (int i = 0; i < 8; i++) {
                int o = col * 8 + ORDER_MAP[i];
                for (int k = 0; k < in; k++) qweight[k * packedColumns + col] |= intweight[o][k] << (i * 4);
                for (int g = 0; g < groups; g++) qzeros[g * packedColumns + col] |= zeros[o][g] << (i * 4);
            }
        }
        for (int g = 0; g < groups; g++) {
            for (int o = 0; o < out; o++) halfScales[g * out + o] = Float.floatToFloat16(scales[o][g]);
        }
        return new Packed(in, out, groupSize, qweight, qzeros, halfScales, intweight, zeros);
    }

    /** Whether AutoAWQ quantizes the tensor: a linear layer's weight inside one of the {@code layers} decoder layers. */
    static boolean quantizes(CheckpointTensor tensor, int layers) {
        String name = tensor.name();
        if (!name.startsWith("model.layers.") || tensor.shape().length != 2) return false;
        int layer = Integer.parseInt(name.substring("model.layers.".length(), name.indexOf('.', "model.layers.".length())));
        return layer < layers && (name.endsWith("_proj.weight") || name.endsWith("_proj_with_mqa.weight"));
    }

    /**
     * Writes an AWQ checkpoint of the floating-point one in {@code source} to {@code target}: config.json with
     * AutoAWQ's {@code quantization_config}, and one model.safetensors.
     */
    static void write(Path source, Path target, int groupSize) throws IOException {
        Files.createDirectories(target);
        Map<String, TensorSpec> tensors = new LinkedHashMap<>();
        try (Checkpoint checkpoint = Models.open(source)) {
            for (String name : new TreeSet<>(checkpoint.tensorNames())) {
                CheckpointTensor tensor = checkpoint.tensor(name);
                if (!quantizes(tensor, checkpoint.config().numLayers())) {
                    tensors.put(name, TensorSpec.ofBytes(tensor.dtype(), tensor.shape(), tensor.data().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)));
                    continue;
                }
                int out = tensor.rows(), in = tensor.columns();
                Packed packed = pack(TensorValues.toFloats(tensor), out, in, groupSize);
                String prefix = name.substring(0, name.length() - ".weight".length());
                tensors.put(prefix + ".qweight", TensorSpec.ofBytes(DType.I32, new long[] {in, out / 8}, bytes(packed.qweight())));
                tensors.put(prefix + ".qzeros", TensorSpec.ofBytes(DType.I32, new long[] {in / groupSize, out / 8}, bytes(packed.qzeros())));
                tensors.put(prefix + ".scales", TensorSpec.ofBytes(DType.F16, new long[] {in / groupSize, out}, bytes(packed.scales())));
            }
        }
        SafetensorsWriter.write(target.resolve("model.safetensors"), tensors);
        Gson gson = new GsonBuilder().setPrettyPrinting().setObjectToNumberStrategy(ToNumberPolicy.LONG_OR_DOUBLE).create();
        Map<String, Object> config = gson.fromJson(Files.readString(source.resolve("config.json")),
                new TypeToken<LinkedHashMap<String, Object>>() {}.getType());
        Map<String, Object> quantization = new LinkedHashMap<>();
        quantization.put("quant_method", "awq");
        quantization.put("bits", 4);
        quantization.put("group_size", groupSize);
        quantization.put("zero_point", true);
        quantization.put("version", "gemm");
        quantization.put("modules_to_not_convert", null);
        config.put("quantization_config", quantization);
        Files.writeString(target.resolve("config.json"), gson.toJson(config));
    }

    private static byte[] bytes(int[] values) {
        ByteBuffer b = ByteBuffer.allocate(4 * values.length).order(ByteOrder.LITTLE_ENDIAN);
        b.asIntBuffer().put(values);
        return b.array();
    }

    private static byte[] bytes(short[] values) {
        ByteBuffer b = ByteBuffer.allocate(2 * values.length).order(ByteOrder.LITTLE_ENDIAN);
        b.asShortBuffer().put(values);
        return b.array();
    }

    /**
     * The dequantized matrix {@code [out, in]} of packed tensors, unpacked in float64 the way AutoAWQ's own
     * {@code dequantize_gemm} does (independently of Kiln's loader): shift out the eight nibbles of each int
     * ({@code unpack_awq}), undo the interleaving with {@code AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]}
     * ({@code reverse_awq_order}), then {@code (iweight - izeros) · scales} per group.
     */
    static double[] dequantize(int[] qweight, int[] qzeros, short[] scales, int in, int out, int groupSize) {
        int[] reverse = {0, 4, 1, 5, 2, 6, 3, 7};
        int packedColumns = out / 8;
        int[][] iweight = new int[in][out];
        int[][] izeros = new int[in / groupSize][out];
        for (int k = 0; k < in; k++) {
            for (int c = 0; c < out; c++) iweight[k][c] = (qweight[k * packedColumns + c / 8] >>> (4 * (c % 8))) & 0xF;
        }
        for (int g = 0; g < in / groupSize; g++) {
            for (int c = 0; c < out; c++) izeros[g][c] = (qzeros[g * packedColumns + c / 8] >>> (4 * (c % 8))) & 0xF;
        }
        double[] w = new double[out * in];
        for (int k = 0; k < in; k++) {
            int g = k / groupSize;
            for (int o = 0; o < out; o++) {
                int unpacked = o / 8 * 8 + reverse[o % 8];
                w[o * in + k] = (iweight[k][unpacked] - izeros[g][unpacked]) * (double) Float.float16ToFloat(scales[g * out + o]);
            }
        }
        return w;
    }

    /** {@link #dequantize} of a layer of an AWQ checkpoint. */
    static double[] dequantize(Checkpoint checkpoint, String prefix) {
        CheckpointTensor qweight = checkpoint.tensor(prefix + ".qweight");
        int in = qweight.rows(), out = 8 * qweight.columns();
        int groups = checkpoint.tensor(prefix + ".qzeros").rows();
        float[] scales = TensorValues.toFloats(checkpoint.tensor(prefix + ".scales"));
        short[] halfScales = new short[scales.length];
        for (int i = 0; i < scales.length; i++) halfScales[i] = Float.floatToFloat16(scales[i]);
        return dequantize(TensorValues.toInts(qweight), TensorValues.toInts(checkpoint.tensor(prefix + ".qzeros")),
                halfScales, in, out, in / groups);
    }
}
