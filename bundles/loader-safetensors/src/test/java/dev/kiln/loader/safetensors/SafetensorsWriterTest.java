package dev.kiln.loader.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.loader.safetensors.SafetensorsWriter.TensorSpec;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Files written by {@link SafetensorsWriter} read back identically, laid out as the reference implementation does. */
class SafetensorsWriterTest {
    @TempDir
    Path folder;

    @Test
    void everyDtypeRoundTrips() throws IOException {
        float[] reals = {0f, -0f, 1f, -2.5f, 0.125f, 448f, -0.015625f, 3.5f};
        Map<String, TensorSpec> tensors = new LinkedHashMap<>();
        for (DType dtype : List.of(DType.F64, DType.F32, DType.F16, DType.BF16, DType.F8_E4M3, DType.F8_E5M2)) {
            tensors.put("real." + dtype, TensorSpec.ofFloats(dtype, new long[] {2, 4}, reals));
        }
        long[] integers = {0, 1, -1, 100, -128, 127, 42, 7};
        for (DType dtype : List.of(DType.I64, DType.I32, DType.I16, DType.I8)) {
            tensors.put("int." + dtype, TensorSpec.ofLongs(dtype, new long[] {8}, integers));
        }
        tensors.put("int.U8", TensorSpec.ofLongs(DType.U8, new long[] {2, 2}, new long[] {0, 128, 255, 9}));
        tensors.put("int.BOOL", TensorSpec.ofLongs(DType.BOOL, new long[] {3}, new long[] {1, 0, 1}));
        tensors.put("raw", TensorSpec.ofBytes(DType.I32, new long[] {2}, new byte[] {1, 0, 0, 0, -1, -1, -1, -1}));
        tensors.put("scalar", TensorSpec.ofFloats(DType.F32, new long[] {}, new float[] {9f}));
        tensors.put("empty", TensorSpec.ofFloats(DType.BF16, new long[] {3, 0}, new float[0]));
        Path file = folder.resolve("all.safetensors");
        SafetensorsWriter.write(file, tensors, Map.of("format", "pt", "producer", "test"));

        RawSafetensors raw = RawSafetensors.read(file);
        assertEquals(0, raw.dataStart() % 8, "data section must start 8-byte aligned");
        assertLaidOutContiguously(raw, tensors);
        try (SafetensorsFile opened = SafetensorsFile.open(file)) {
            assertEquals(Map.of("format", "pt", "producer", "test"), opened.metadata());
            assertEquals(List.copyOf(tensors.keySet()), List.copyOf(opened.tensors().keySet()));
            for (Map.Entry<String, TensorSpec> e : tensors.entrySet()) {
                CheckpointTensor t = opened.tensor(e.getKey());
                assertEquals(e.getValue().dtype(), t.dtype());
                assertArrayEquals(e.getValue().shape(), t.shape());
            }
            for (DType dtype : List.of(DType.F64, DType.F32, DType.F16, DType.BF16, DType.F8_E4M3, DType.F8_E5M2)) {
                // Every value above is exact in every real format, 448 included (the largest E4M3).
                assertArrayEquals(reals, TensorValues.toFloats(opened.tensor("real." + dtype)), dtype.name());
            }
            for (DType dtype : List.of(DType.I64, DType.I32, DType.I16, DType.I8)) {
                assertArrayEquals(integers, TensorValues.toLongs(opened.tensor("int." + dtype)), dtype.name());
            }
            assertArrayEquals(new long[] {0, 128, 255, 9}, TensorValues.toLongs(opened.tensor("int.U8")));
            assertArrayEquals(new int[] {1, 0, 1}, TensorValues.toInts(opened.tensor("int.BOOL")));
            assertArrayEquals(new int[] {1, -1}, TensorValues.toInts(opened.tensor("raw")));
            assertArrayEquals(new float[] {9f}, TensorValues.toFloats(opened.tensor("scalar")));
            assertEquals(0, opened.tensor("empty").data().byteSize());
        }
    }

    /** A tensor spanning several of the writer's 4 MiB chunks, produced by a generator, arrives intact. */
    @Test
    void generatedTensorStreamsAcrossChunks() throws IOException {
        int count = (9 << 20) / 4 + 1000;
        TensorSpec generated = TensorSpec.generated(DType.I32, new long[] {count}, (offset, chunk) -> {
            assertEquals(0, offset % 4);
            for (int i = (int) (offset / 4); chunk.hasRemaining(); i++) chunk.putInt(i * 3 - 7);
        });
        Path file = folder.resolve("big.safetensors");
        SafetensorsWriter.write(file, Map.of("ramp", generated), Map.of());
        try (SafetensorsFile opened = SafetensorsFile.open(file)) {
            assertTrue(opened.metadata().isEmpty());
            int[] values = TensorValues.toInts(opened.tensor("ramp"));
            assertEquals(count, values.length);
            for (int i = 0; i < count; i++) {
                if (values[i] != i * 3 - 7) throw new AssertionError("element " + i + " is " + values[i]);
            }
        }
    }

    @Test
    void roundingToNarrowFormatsIsToNearest() throws IOException {
        float[] values = {1.00390625f, 1.01171875f, 1000f, 0.3f, -1e-10f};
        Path file = folder.resolve("rounded.safetensors");
        SafetensorsWriter.write(file, Map.of(
                "bf16", TensorSpec.ofFloats(DType.BF16, new long[] {5}, values),
                "fp8", TensorSpec.ofFloats(DType.F8_E4M3, new long[] {5}, values)));
        try (SafetensorsFile opened = SafetensorsFile.open(file)) {
            // 1 + 2^-8 lies halfway between bf16 1 and 1 + 2^-7 and goes to the even one; 1 + 3 * 2^-8 goes up.
            float[] bf16 = TensorValues.toFloats(opened.tensor("bf16"));
            assertEquals(1f, bf16[0]);
            assertEquals(1.015625f, bf16[1]);
            assertEquals(1000f, bf16[2]);
            assertEquals(0.30078125f, bf16[3]);
            float[] fp8 = TensorValues.toFloats(opened.tensor("fp8"));
            assertArrayEquals(new float[] {1f, 1f, 448f, 0.3125f, -0f}, fp8);
        }
    }

    @Test
    void rewritingReplacesTheFileAndLeavesNothingElse() throws IOException {
        Path file = folder.resolve("w.safetensors");
        SafetensorsWriter.write(file, Map.of("a", TensorSpec.ofFloats(DType.F32, new long[] {1}, new float[] {1})));
        SafetensorsWriter.write(file, Map.of("b", TensorSpec.ofFloats(DType.F32, new long[] {2}, new float[] {2, 3})));
        try (SafetensorsFile opened = SafetensorsFile.open(file)) {
            assertEquals(List.of("b"), List.copyOf(opened.tensors().keySet()));
        }
        assertEquals(List.of(file), filesInFolder());
    }

    @Test
    void failingSourceLeavesNoFile() {
        Path file = folder.resolve("failed.safetensors");
        TensorSpec failing = TensorSpec.generated(DType.F32, new long[] {4}, (offset, chunk) -> {
            throw new IOException("generator broke");
        });
        IOException e = assertThrows(IOException.class, () -> SafetensorsWriter.write(file, Map.of("x", failing)));
        assertEquals("generator broke", e.getMessage());
        assertFalse(Files.exists(file));
        assertEquals(List.of(), filesInFolder());
    }

    @Test
    void inconsistentSpecsAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> TensorSpec.ofBytes(DType.F32, new long[] {2}, new byte[7]));
        assertThrows(IllegalArgumentException.class, () -> TensorSpec.ofFloats(DType.BF16, new long[] {2, 2}, new float[3]));
        assertThrows(IllegalArgumentException.class, () -> TensorSpec.ofFloats(DType.I32, new long[] {1}, new float[1]));
        assertThrows(IllegalArgumentException.class, () -> TensorSpec.ofLongs(DType.F32, new long[] {1}, new long[1]));
        assertThrows(IllegalArgumentException.class, () -> TensorSpec.ofLongs(DType.I8, new long[] {1}, new long[] {128}));
        assertThrows(IllegalArgumentException.class, () -> TensorSpec.ofLongs(DType.U8, new long[] {1}, new long[] {-1}));
        assertThrows(IllegalArgumentException.class, () -> TensorSpec.ofLongs(DType.BOOL, new long[] {1}, new long[] {2}));
        assertThrows(IllegalArgumentException.class,
                () -> TensorSpec.generated(DType.F32, new long[] {-1}, (offset, chunk) -> {}));
        assertThrows(IllegalArgumentException.class,
                () -> TensorSpec.generated(DType.F64, new long[] {1L << 31, 1L << 31}, (offset, chunk) -> {}));
        Path file = folder.resolve("bad.safetensors");
        assertThrows(IllegalArgumentException.class, () -> SafetensorsWriter.write(file,
                Map.of("__metadata__", TensorSpec.ofFloats(DType.F32, new long[] {1}, new float[1]))));
        assertFalse(Files.exists(file));
    }

    @Test
    void specShapeIsDefensivelyCopied() {
        long[] shape = {2, 3};
        TensorSpec spec = TensorSpec.ofFloats(DType.F32, shape, new float[6]);
        shape[0] = 99;
        spec.shape()[1] = 99;
        assertArrayEquals(new long[] {2, 3}, spec.shape());
        assertEquals(24, spec.byteLength());
    }

    /** Offsets start at 0 and each tensor begins where the previous one ended, in the order given. */
    private static void assertLaidOutContiguously(RawSafetensors raw, Map<String, TensorSpec> tensors) {
        long expectedBegin = 0;
        for (Map.Entry<String, TensorSpec> e : tensors.entrySet()) {
            JsonObject entry = raw.header().getAsJsonObject(e.getKey());
            JsonArray offsets = entry.getAsJsonArray("data_offsets");
            assertEquals(expectedBegin, offsets.get(0).getAsLong(), e.getKey());
            expectedBegin += e.getValue().byteLength();
            assertEquals(expectedBegin, offsets.get(1).getAsLong(), e.getKey());
        }
        assertEquals(raw.bytes().length, raw.dataStart() + expectedBegin);
    }

    private List<Path> filesInFolder() {
        try (Stream<Path> files = Files.list(folder)) {
            return files.toList();
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }
}
