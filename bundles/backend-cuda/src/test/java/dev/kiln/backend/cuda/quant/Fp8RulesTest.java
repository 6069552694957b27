package dev.kiln.backend.cuda.quant;

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
import dev.kiln.backend.cuda.CudaFp8Quantizer;
import dev.kiln.backend.cuda.internal.Fp8Weight;
import dev.kiln.backend.cuda.testing.Data;
import dev.kiln.backend.cuda.testing.Fixtures;
import dev.kiln.loader.safetensors.SafetensorsCheckpointLoader;
import dev.kiln.quant.fp8.Fp8Quantizer;
import dev.kiln.quant.fp8.internal.BlockQuantization;
import dev.kiln.quant.fp8.internal.KernelScratch;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The device's FP8 format against the CPU bundle's, without a GPU: every e4m3 code decodes alike (and alike by the bit
 * manipulation the kernels use, whose NaN test flags exactly the NaN codes), rounding to e4m3 is the same, a floating
 * point matrix quantized on load gets the same codes and bit-identical scales (partial edge blocks, zeros, NaN,
 * infinities, saturation), a pre-quantized checkpoint's codes and scales are read as the CPU reads them, and the
 * same inconsistent checkpoints are refused with the same field and message. Values are compared as the CPU weight's
 * own row gather gives them ({@code code · scale} in f32) against the device layout the uploads carry, rows padded to
 * 16 bytes with zero codes.
 */
class Fp8RulesTest {
    private static final CpuBackend CPU = new CpuBackend(2);
    private static final KernelScratch SCRATCH = new KernelScratch(CPU.pool().threads());
    private final Random random = new Random(31);

    @AfterAll
    static void stop() {
        CPU.shutdown();
    }

    /** The kernels' decoding (quant_kernels.cu: e4m3_top_byte), without its NaN test. */
    private static float kernelDecode(int code) {
        int top = code << 24;
        return Float.intBitsToFloat((top >> 4) & 0x87F00000) * 0x1p120f;
    }

    /** The kernels' NaN test of four codes (quant_kernels.cu: e4m3_nan_bytes). */
    private static int kernelNanBytes(int word) {
        return ((word & 0x7F7F7F7F) + 0x01010101) & 0x80808080;
    }

    private static void assertSameFloat(float expected, float actual, String what) {
        if (Float.isNaN(expected)) assertTrue(Float.isNaN(actual), what + ": expected NaN, got " + actual);
        else assertEquals(Float.floatToRawIntBits(expected), Float.floatToRawIntBits(actual), what + ": expected "
                + expected + ", got " + actual);
    }

    @Test
    void everyCodeDecodesAsTheCpuCodecDoesAndAsTheKernelsBitManipulationDoes() {
        int nanCodes = 0;
        for (int code = 0; code < 256; code++) {
            float cpu = dev.kiln.quant.fp8.internal.E4m3.toFloat((byte) code);
            assertSameFloat(cpu, E4m3.toFloat((byte) code), "code " + code);
            for (int position = 0; position < 4; position++) {
                int others = random.nextInt() & 0x7E7E7E7E; // no NaN among the other three codes
                int word = (others & ~(0xFF << 8 * position)) | code << 8 * position;
                int flagged = kernelNanBytes(word);
                assertEquals(Float.isNaN(cpu) ? 0x80 << 8 * position : 0, flagged, "NaN test of code " + code
                        + " at byte " + position + " of " + Integer.toHexString(word));
            }
            if (Float.isNaN(cpu)) {
                nanCodes++;
                assertEquals(480f, Math.abs(kernelDecode(code)), "a NaN code is caught by the NaN test, not the decoding");
            } else {
                assertSameFloat(cpu, kernelDecode(code), "the kernels' decoding of code " + code);
            }
        }
        assertEquals(2, nanCodes);
        assertEquals(0x1p-9f, kernelDecode(0x01), "smallest subnormal");
        assertEquals(-0x1p-6f * 0.875f, kernelDecode(0x87), "largest negative subnormal");
        assertEquals(448f, kernelDecode(0x7E));
        assertEquals(Float.floatToRawIntBits(-0f), Float.floatToRawIntBits(kernelDecode(0x80)), "negative zero");
    }

    @Test
    void roundingToE4m3IsTheCpuCodecs() {
        float[] specials = {0f, -0f, Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, 448f, -448f, 464f, 479f,
                1e9f, Float.MIN_VALUE, -Float.MIN_VALUE, 0x1p-10f, 0x1p-9f * 1.5f, 0x1p-11f, Float.MAX_VALUE};
        for (float v : specials) {
            assertEquals(dev.kiln.quant.fp8.internal.E4m3.fromFloat(v), E4m3.fromFloat(v), "value " + v);
        }
        for (int code = 0; code < 0x7E; code++) {
            float value = E4m3.toFloat((byte) code);
            float midpoint = (value + E4m3.toFloat((byte) (code + 1))) / 2;
            for (float v : new float[] {midpoint, -midpoint, Math.nextUp(midpoint), Math.nextDown(midpoint), value}) {
                assertEquals(dev.kiln.quant.fp8.internal.E4m3.fromFloat(v), E4m3.fromFloat(v), "value " + v);
            }
        }
        for (int i = 0; i < 200_000; i++) {
            float v = (float) (random.nextGaussian() * Math.pow(2, random.nextInt(-16, 12)));
            assertEquals(dev.kiln.quant.fp8.internal.E4m3.fromFloat(v), E4m3.fromFloat(v), "value " + v);
        }
    }

    /**
     * Shapes ending mid-block in either direction or both (and a single element), in every floating type; blocks of
     * zeros, of one tiny value, of huge values, with NaN and with infinities.
     */
    @ParameterizedTest(name = "{0}x{1} {2}")
    @CsvSource({"1, 1, F32", "5, 300, BF16", "128, 128, F16", "129, 257, BF16", "300, 200, F32", "257, 384, BF16",
            "384, 16, F16"})
    void quantizingOnLoadGivesTheCpuCodesAndScales(int rows, int columns, DType type) {
        float[] values = new float[rows * columns];
        for (int i = 0; i < values.length; i++) {
            values[i] = (float) (random.nextGaussian() * Math.pow(10, random.nextInt(-3, 2)));
        }
        if (rows > 128 && columns > 128) {
            for (int r = 128; r < Math.min(rows, 256); r++) {
                for (int c = 0; c < 128; c++) values[r * columns + c] = 0; // block (1, 0): zeros, scale 1
            }
            for (int r = 0; r < 128; r++) {
                for (int c = 128; c < Math.min(columns, 256); c++) values[r * columns + c] = 0;
            }
            values[3 * columns + 130] = 1e-6f; // block (0, 1): one tiny value among zeros
            values[2 * columns + 5] = 6e4f;    // block (0, 0): one huge value, the rest far below its 448th
        }
        if (rows * columns > 4) {
            values[rows * columns - 1] = Float.NaN;
            values[rows * columns / 2] = Float.POSITIVE_INFINITY;
            values[1] = Float.NEGATIVE_INFINITY;
        }
        CheckpointTensor tensor = Data.tensor("w", type, values, rows, columns);
        float[] expected = gathered(BlockQuantization.quantize(tensor, 128, 128, CPU.pool(), SCRATCH));

        int rowBytes = Fp8Weight.rowBytes(columns);
        float[] scales = new float[Fp8Weight.blocks(rows, 128) * Fp8Weight.blocks(columns, 128)];
        try (Arena arena = Arena.ofShared()) { // the quantization's threads write the codes
            MemorySegment whole = arena.allocate((long) rows * rowBytes, 16);
            whole.fill((byte) 0x55); // the padding must be written as zeros, not left as found
            Fp8Blocks.quantizeBand(tensor, 0, rows, whole, rowBytes, scales);
            assertDeviceLayout(expected, whole, scales, rows, columns, 128, 128, "quantized in one band");

            // Bands of whole row blocks, as the upload goes when a matrix is larger than one band.
            MemorySegment banded = arena.allocate((long) rows * rowBytes, 16);
            float[] bandScales = new float[scales.length];
            for (int first = 0; first < rows; first += 128) {
                int count = Math.min(128, rows - first);
                Fp8Blocks.quantizeBand(tensor, first, count, banded.asSlice((long) first * rowBytes), rowBytes, bandScales);
            }
            assertDeviceLayout(expected, banded, bandScales, rows, columns, 128, 128, "quantized in bands of 128 rows");
        }
    }

    @Test
    void theDeepSeekFp8CheckpointIsReadAsTheCpuQuantizerReadsIt() throws IOException {
        try (Checkpoint checkpoint = open("deepseek-v3-tiny-fp8")) {
            var cpuQuantizer = new Fp8Quantizer();
            assertTrue(Fp8Checkpoint.isPreQuantized(checkpoint) && new CudaFp8Quantizer().isPreQuantized(checkpoint));
            int[] block = Fp8Checkpoint.blockSize(checkpoint.config());
            assertEquals(List.of(128, 128), List.of(block[0], block[1]));
            int checked = 0;
            for (String name : checkpoint.tensorNames()) {
                CheckpointTensor weight = checkpoint.tensor(name);
                if (weight.dtype() != DType.F8_E4M3 || !(name.contains("layers.0.") || name.contains("experts.3."))) continue;
                String prefix = name.substring(0, name.length() - ".weight".length());
                float[] expected = gathered(cpuQuantizer.load(checkpoint, prefix, CPU));
                float[] scales = Fp8Checkpoint.blockScales(checkpoint, weight, block[0], block[1]);
                assertDeviceLayout(expected, padded(weight), scales, weight.rows(), weight.columns(), block[0], block[1],
                        prefix);
                checked++;
            }
            assertEquals(17, checked, "the FP8 layers of layer 0 and of one expert in each MoE layer");
        }
        try (Checkpoint dense = open("deepseek-v3-tiny")) {
            assertFalse(Fp8Checkpoint.isPreQuantized(dense));
        }
    }

    /**
     * Codes of every value (each code at least once), widths that are not a multiple of 16 (padded rows) and blocks of
     * other sizes than DeepSeek's, read from a checkpoint by both quantizers.
     */
    @ParameterizedTest(name = "{0}x{1} in blocks of {2}x{3}")
    @CsvSource({"37, 77, 128, 128", "300, 260, 64, 32", "130, 100, 7, 40", "16, 256, 128, 128"})
    void storedCodesOfAnyWidthAndBlockSizeAreReadAsTheCpuReadsThem(int rows, int columns, int blockRows,
                                                                  int blockColumns) throws IOException {
        try (Checkpoint fixture = open("deepseek-v3-tiny-fp8"); Arena arena = Arena.ofShared()) {
            byte[] codes = new byte[rows * columns];
            for (int i = 0; i < codes.length; i++) codes[i] = (byte) (i < 256 ? i : random.nextInt(256));
            MemorySegment data = arena.allocate(codes.length);
            MemorySegment.copy(codes, 0, data, ValueLayout.JAVA_BYTE, 0, codes.length);
            String prefix = "model.layers.0.mlp.down_proj";
            CheckpointTensor weight = new CheckpointTensor(prefix + ".weight", DType.F8_E4M3, new long[] {rows, columns},
                    data, Path.of("generated"));
            int scaleRows = Fp8Weight.blocks(rows, blockRows), scaleColumns = Fp8Weight.blocks(columns, blockColumns);
            float[] blockScales = new float[scaleRows * scaleColumns];
            for (int i = 0; i < blockScales.length; i++) {
                blockScales[i] = (float) Math.pow(2, random.nextInt(-20, 5)) * (0.5f + random.nextFloat());
            }
            CheckpointTensor scale = Data.tensor(prefix + ".weight_scale_inv", DType.F32, blockScales, scaleRows,
                    scaleColumns);
            Checkpoint checkpoint = new Edited(fixture, Map.of(weight.name(), weight, scale.name(), scale), Set.of())
                    .configure("quantization_config", Map.of("quant_method", "fp8", "fmt", "e4m3",
                            "weight_block_size", List.of(blockRows, blockColumns)));
            float[] expected = gathered(new Fp8Quantizer().load(checkpoint, prefix, CPU));
            int[] block = Fp8Checkpoint.blockSize(checkpoint.config());
            float[] scales = Fp8Checkpoint.blockScales(checkpoint, weight, block[0], block[1]);
            assertDeviceLayout(expected, padded(weight), scales, rows, columns, blockRows, blockColumns, "stored codes");
        }
    }

    /** Each edit of the FP8 fixture that the CPU quantizer refuses: the device's reading refuses it alike. */
    @Test
    void inconsistentCheckpointsAreRefusedWithTheCpuQuantizersFieldAndMessage() throws IOException {
        String prefix = "model.layers.0.self_attn.o_proj";
        try (Checkpoint checkpoint = open("deepseek-v3-tiny-fp8")) {
            CheckpointTensor scale = checkpoint.tensor(prefix + ".weight_scale_inv");
            CheckpointTensor weight = checkpoint.tensor(prefix + ".weight");
            float[] withNan = Data.uniform(random, 3);
            withNan[1] = Float.NaN;
            Map<String, Checkpoint> edits = new LinkedHashMap<>();
            edits.put("no scales", new Edited(checkpoint, Map.of(), Set.of(scale.name())));
            edits.put("misshapen scales", new Edited(checkpoint, Map.of(scale.name(), new CheckpointTensor(scale.name(),
                    scale.dtype(), new long[] {1, 3}, scale.data().asSlice(0, 12), scale.file())), Set.of()));
            edits.put("bf16 scales", new Edited(checkpoint, Map.of(scale.name(),
                    Data.tensor(scale.name(), DType.BF16, new float[] {1, 2, 3}, 3, 1)), Set.of()));
            edits.put("a NaN scale", new Edited(checkpoint, Map.of(scale.name(),
                    Data.tensor(scale.name(), DType.F32, withNan, 3, 1)), Set.of()));
            edits.put("truncated codes", new Edited(checkpoint, Map.of(weight.name(), new CheckpointTensor(weight.name(),
                    weight.dtype(), weight.shape(), weight.data().asSlice(0, 100), weight.file())), Set.of()));
            edits.put("no block size", new Edited(checkpoint, Map.of(), Set.of())
                    .configure("quantization_config", Map.of("quant_method", "fp8", "fmt", "e4m3")));
            edits.put("e5m2", new Edited(checkpoint, Map.of(), Set.of()).configure("quantization_config",
                    Map.of("quant_method", "fp8", "fmt", "e5m2", "weight_block_size", List.of(128, 128))));
            edits.put("odd block size", new Edited(checkpoint, Map.of(), Set.of()).configure("quantization_config",
                    Map.of("quant_method", "fp8", "weight_block_size", List.of(128.5, 128))));
            edits.put("block size beyond an int", new Edited(checkpoint, Map.of(), Set.of()).configure("quantization_config",
                    Map.of("quant_method", "fp8", "weight_block_size", List.of(1e10, 128))));
            edits.put("one block row of Integer.MAX_VALUE rows", new Edited(checkpoint, Map.of(), Set.of()).configure(
                    "quantization_config", Map.of("quant_method", "fp8", "weight_block_size", List.of(Integer.MAX_VALUE, 128))));
            edits.put("no quantization_config", new Edited(checkpoint, Map.of(), Set.of())
                    .configure("quantization_config", null));
            for (var edit : edits.entrySet()) {
                Checkpoint edited = edit.getValue();
                var cpu = assertThrows(InvalidCheckpointException.class, () -> new Fp8Quantizer().load(edited, prefix, CPU),
                        edit.getKey());
                var cuda = assertThrows(InvalidCheckpointException.class, () -> {
                    CheckpointTensor w = edited.tensor(prefix + ".weight");
                    int[] block = Fp8Checkpoint.blockSize(edited.config());
                    Fp8Checkpoint.blockScales(edited, w, block[0], block[1]);
                }, edit.getKey());
                assertEquals(cpu.field(), cuda.field(), edit.getKey());
                assertEquals(cpu.getMessage(), cuda.getMessage(), edit.getKey());
                if (edit.getKey().startsWith("one block row")) {
                    // One block of rows (the grid's height counted without overflow), the fixture's three refused.
                    assertTrue(cuda.getMessage().contains("need F32 [1, "), cuda.getMessage());
                }
            }
        }
    }

    @Test
    void theQuantizerServesTheCudaBackendOnly() throws IOException {
        var quantizer = new CudaFp8Quantizer();
        assertEquals("fp8", quantizer.name());
        assertFalse(quantizer.supports(CPU));
        try (Checkpoint checkpoint = open("deepseek-v3-tiny-fp8")) {
            var e = assertThrows(IllegalArgumentException.class,
                    () -> quantizer.load(checkpoint, "model.layers.0.self_attn.o_proj", CPU));
            assertEquals("this fp8 quantizer has kernels for the CUDA backend only, not 'cpu'", e.getMessage());
        }
    }

    /** Asserts that codes in the device layout and block scales give the expected matrix, and zero padding. */
    private static void assertDeviceLayout(float[] expected, MemorySegment codes, float[] scales, int rows, int columns,
                                           int blockRows, int blockColumns, String what) {
        int rowBytes = Fp8Weight.rowBytes(columns);
        int columnBlocks = Fp8Weight.blocks(columns, blockColumns);
        assertEquals(Fp8Weight.blocks(rows, blockRows) * columnBlocks, scales.length, what + ": scales");
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < rowBytes; c++) {
                byte code = codes.get(ValueLayout.JAVA_BYTE, (long) r * rowBytes + c);
                if (c >= columns) {
                    assertEquals(0, code, what + ": padding at [" + r + ", " + c + "]");
                    continue;
                }
                float value = E4m3.toFloat(code) * scales[(r / blockRows) * columnBlocks + c / blockColumns];
                assertSameFloat(expected[r * columns + c], value, what + " [" + r + ", " + c + "]");
            }
        }
    }

    /** The weight's matrix as its own row gather gives it. */
    private static float[] gathered(Weight weight) {
        int rows = weight.rows(), columns = weight.columns();
        int[] ids = new int[rows];
        for (int r = 0; r < rows; r++) ids[r] = r;
        CpuTensor out = CpuTensor.allocate(DType.F32, rows, columns);
        weight.gatherRows(ids, out);
        float[] values = new float[rows * columns];
        for (int r = 0; r < rows; r++) System.arraycopy(out.array(), out.rowOffset(r), values, r * columns, columns);
        return values;
    }

    /** A stored F8 matrix in the device layout, in bands of a few rows as the upload pads them. */
    private static MemorySegment padded(CheckpointTensor weight) {
        int rows = weight.rows(), columns = weight.columns(), rowBytes = Fp8Weight.rowBytes(columns);
        MemorySegment out = Arena.ofAuto().allocate((long) rows * rowBytes, 16);
        out.fill((byte) 0x55);
        for (int first = 0; first < rows; first += 7) {
            Fp8Blocks.padRows(weight.data(), columns, first, Math.min(7, rows - first),
                    out.asSlice((long) first * rowBytes), rowBytes);
        }
        return out;
    }

    private static Checkpoint open(String fixture) throws IOException {
        return new SafetensorsCheckpointLoader().open(Fixtures.folder(fixture));
    }

    /** A checkpoint seen with tensors replaced or hidden and configuration fields changed (null removes one). */
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
            if (value == null) json.remove(field);
            else json.put(field, value);
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
