package dev.kiln.loader.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.tensor.DType;
import dev.kiln.loader.safetensors.SafetensorsWriter.TensorSpec;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.StringReader;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Several hundred deterministic corruptions of a valid file's header (byte flips, truncations, edits of dtypes,
 * shapes and offsets, junk values, overlaps, duplicated names, wrong lengths): each file must either load with every
 * tensor exactly where an independent reading of its header puts it, or be refused with an
 * {@link InvalidCheckpointException} naming the file; no other exception may escape.
 */
class HeaderMutationTest {
    private static final int MUTATIONS = 700;
    private static final List<String> DTYPES = List.of("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I64",
            "I32", "I16", "I8", "U8", "BOOL", "F4", "U64", "", "f32", "F32 ", "BF16\u0000");

    @TempDir
    Path folder;

    private Path file;
    private byte[] data;
    private JsonObject header;
    private final SafetensorsCheckpointLoader loader = new SafetensorsCheckpointLoader();
    private final Random random = new Random(20261122);

    @BeforeEach
    void writeValidFile() throws IOException {
        Files.writeString(folder.resolve("config.json"), "{\"model_type\": \"test\", \"hidden_size\": 4}");
        file = folder.resolve("model.safetensors");
        Map<String, TensorSpec> tensors = new LinkedHashMap<>();
        tensors.put("w.f32", TensorSpec.ofFloats(DType.F32, new long[] {2, 3}, new float[] {1, -2, 3.5f, 0, 1e-3f, 7}));
        tensors.put("w.bf16", TensorSpec.ofFloats(DType.BF16, new long[] {4}, new float[] {0.5f, -1, 96, 1e-8f}));
        tensors.put("ids", TensorSpec.ofLongs(DType.I64, new long[] {3}, new long[] {5, -1, 1L << 40}));
        tensors.put("bytes", TensorSpec.ofLongs(DType.U8, new long[] {5}, new long[] {0, 1, 127, 128, 255}));
        tensors.put("w.fp8", TensorSpec.ofFloats(DType.F8_E4M3, new long[] {2, 2}, new float[] {1, -0.5f, 448, 0.01f}));
        tensors.put("mask", TensorSpec.ofLongs(DType.BOOL, new long[] {3}, new long[] {1, 0, 1}));
        tensors.put("scalar", TensorSpec.ofFloats(DType.F16, new long[] {}, new float[] {-3}));
        tensors.put("empty", TensorSpec.ofFloats(DType.F32, new long[] {0, 8}, new float[0]));
        SafetensorsWriter.write(file, tensors);
        byte[] bytes = Files.readAllBytes(file);
        RawSafetensors raw = RawSafetensors.read(file);
        header = raw.header();
        data = Arrays.copyOfRange(bytes, raw.dataStart(), bytes.length);
    }

    @Test
    void everyMutantLoadsConsistentlyOrIsRefusedNamingTheFile() throws IOException {
        byte[] original = Files.readAllBytes(file);
        int accepted = 0;
        int refused = 0;
        for (int i = 0; i < MUTATIONS; i++) {
            StringBuilder description = new StringBuilder("mutation " + i + ":");
            byte[] mutant = switch (i % 7) {
                case 0 -> flipBytes(original, description);
                case 1 -> truncate(original, description);
                case 2 -> rewriteLength(original, description);
                default -> editJson(description);
            };
            Files.write(file, mutant);
            if (check(mutant, i % 2 == 0, description.toString())) accepted++;
            else refused++;
        }
        // Both outcomes must be common, or the mutations are not testing what they claim to.
        assertTrue(accepted >= 40, "only " + accepted + " mutants loaded");
        assertTrue(refused >= 300, "only " + refused + " mutants were refused");
    }

    /** Opens the mutant; true when it loaded (and was consistent), false when it was refused properly. */
    private boolean check(byte[] mutant, boolean throughLoader, String description) {
        try {
            if (throughLoader) {
                try (Checkpoint checkpoint = loader.open(folder)) {
                    Map<String, CheckpointTensor> tensors = new LinkedHashMap<>();
                    for (String name : checkpoint.tensorNames()) tensors.put(name, checkpoint.tensor(name));
                    assertConsistent(mutant, tensors, description);
                }
            } else {
                try (SafetensorsFile opened = SafetensorsFile.open(file)) {
                    assertConsistent(mutant, opened.tensors(), description);
                }
            }
            return true;
        } catch (InvalidCheckpointException refusal) {
            assertEquals(file, refusal.file(), description);
            assertTrue(refusal.getMessage().startsWith(file.toString()), description + ": " + refusal.getMessage());
            return false;
        } catch (AssertionError inconsistent) {
            throw inconsistent;
        } catch (Throwable escaped) {
            throw new AssertionError(description + " let " + escaped + " escape", escaped);
        }
    }

    /** Each loaded tensor is where a strict third-party parse of the same header puts it, and decodes. */
    private void assertConsistent(byte[] mutant, Map<String, CheckpointTensor> tensors, String description) throws IOException {
        ByteBuffer in = ByteBuffer.wrap(mutant).order(ByteOrder.LITTLE_ENDIAN);
        long headerLength = in.getLong(0);
        String json = new String(mutant, 8, (int) headerLength, StandardCharsets.UTF_8);
        JsonReader reader = new JsonReader(new StringReader(json));
        reader.setStrictness(Strictness.STRICT);
        JsonObject parsed = JsonParser.parseReader(reader).getAsJsonObject();
        parsed.remove("__metadata__");
        assertEquals(parsed.keySet(), tensors.keySet(), description);
        long dataStart = 8 + headerLength;
        List<long[]> ranges = new ArrayList<>();
        for (CheckpointTensor t : tensors.values()) {
            JsonObject entry = parsed.getAsJsonObject(t.name());
            assertEquals(entry.get("dtype").getAsString(), t.dtype().name(), description);
            JsonArray shape = entry.getAsJsonArray("shape");
            long[] expectedShape = new long[shape.size()];
            for (int d = 0; d < expectedShape.length; d++) expectedShape[d] = shape.get(d).getAsLong();
            assertArrayEquals(expectedShape, t.shape(), description);
            long begin = dataStart + entry.getAsJsonArray("data_offsets").get(0).getAsLong();
            long end = dataStart + entry.getAsJsonArray("data_offsets").get(1).getAsLong();
            assertTrue(begin <= end && end <= mutant.length, description);
            assertEquals(end - begin, t.size() * t.dtype().byteSize(), description);
            assertEquals(-1, MemorySegment.ofArray(Arrays.copyOfRange(mutant, (int) begin, (int) end)).mismatch(t.data()),
                    description + ": bytes of " + t.name());
            if (begin < end) ranges.add(new long[] {begin, end});
            if (t.dtype().isFloatingPoint()) {
                assertEquals(t.size(), TensorValues.toFloats(t).length, description);
            } else if (t.dtype() != DType.BOOL) {
                assertEquals(t.size(), TensorValues.toLongs(t).length, description);
            }
            if (t.data().byteSize() > 0) t.data().get(ValueLayout.JAVA_BYTE, t.data().byteSize() - 1);
        }
        ranges.sort((a, b) -> Long.compare(a[0], b[0]));
        for (int r = 1; r < ranges.size(); r++) {
            assertTrue(ranges.get(r)[0] >= ranges.get(r - 1)[1], description + ": tensors overlap");
        }
    }

    private byte[] flipBytes(byte[] original, StringBuilder description) {
        byte[] mutant = original.clone();
        int headerEnd = 8 + (int) ByteBuffer.wrap(original).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
        for (int flips = 1 + random.nextInt(3); flips > 0; flips--) {
            int at = random.nextInt(headerEnd);
            int mask = 1 + random.nextInt(255);
            mutant[at] ^= (byte) mask;
            description.append(" flip byte ").append(at).append(" by ").append(mask);
        }
        return mutant;
    }

    private byte[] truncate(byte[] original, StringBuilder description) {
        int length = random.nextInt(original.length);
        description.append(" truncate to ").append(length);
        return Arrays.copyOf(original, length);
    }

    private byte[] rewriteLength(byte[] original, StringBuilder description) {
        byte[] mutant = original.clone();
        long headerLength = ByteBuffer.wrap(original).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
        long[] candidates = {headerLength - 1 - random.nextInt(16), headerLength + 1 + random.nextInt(16),
                random.nextLong(), -1 - random.nextInt(100), 0, original.length - 8, original.length - 7,
                1L << (32 + random.nextInt(31)), headerLength - 2 * (headerLength - 2)};
        long length = candidates[random.nextInt(candidates.length)];
        description.append(" header length ").append(Long.toUnsignedString(length));
        ByteBuffer.wrap(mutant).order(ByteOrder.LITTLE_ENDIAN).putLong(0, length);
        return mutant;
    }

    private byte[] editJson(StringBuilder description) {
        JsonObject edited = header.deepCopy();
        byte[] section = data;
        String suffix = "";
        for (int edits = 1 + random.nextInt(3); edits > 0; edits--) {
            List<String> names = new ArrayList<>(edited.keySet());
            String name = names.get(random.nextInt(names.size()));
            JsonElement value = edited.get(name);
            JsonObject entry = value.isJsonObject() ? value.getAsJsonObject() : null;
            int kind = random.nextInt(14);
            description.append(" [").append(name).append(" edit ").append(kind);
            switch (kind) {
                case 0 -> {
                    if (entry != null) entry.add("dtype", random.nextInt(4) == 0 ? junk() : new JsonPrimitive(pick(DTYPES)));
                }
                case 1 -> {
                    if (entry != null) entry.add("shape", randomShape());
                }
                case 2 -> {
                    if (entry != null) entry.add("data_offsets", randomOffsets(edited, section.length));
                }
                case 3 -> {
                    if (entry != null) entry.remove(pick(List.of("dtype", "shape", "data_offsets")));
                }
                case 4 -> edited.add(name, junk());
                case 5 -> {
                    if (entry != null) entry.add("extra_" + random.nextInt(3), junk());
                }
                case 6 -> {
                    // Point this tensor at another's bytes (with or without taking its dtype and shape too): an
                    // overlap unless both are empty.
                    JsonElement other = edited.get(pick(names));
                    if (entry != null && other.isJsonObject() && other.getAsJsonObject().has("data_offsets")) {
                        if (random.nextBoolean()) edited.add(name, other.deepCopy());
                        else entry.add("data_offsets", other.getAsJsonObject().get("data_offsets").deepCopy());
                    }
                }
                case 7 -> {
                    int delta = random.nextInt(33) - 16;
                    for (String n : names) shiftOffsets(edited.get(n), delta);
                    description.append(" shift all by ").append(delta);
                }
                case 8 -> {
                    int newLength = Math.max(0, section.length + random.nextInt(33) - 16);
                    section = Arrays.copyOf(section, newLength);
                    description.append(" data section ").append(newLength);
                }
                case 9 -> edited.add("__metadata__", random.nextBoolean() ? junk() : metadataWithJunk());
                case 10 -> suffix = pick(List.of(", \"" + name + "\": {}", " }", "garbage", "\u0000", "]"));
                case 11 -> {
                    if (entry != null) {
                        JsonArray shape = new JsonArray();
                        shape.add(random.nextInt(4));
                        shape.add(random.nextInt(4));
                        entry.add("shape", shape);
                    }
                }
                case 12 -> section = relayout(edited, section);
                case 13 -> {
                    JsonObject metadata = new JsonObject();
                    metadata.addProperty("format", pick(List.of("pt", "np", "")));
                    metadata.addProperty("n\u00e4me " + random.nextInt(3), "\u2028\"}");
                    edited.add("__metadata__", metadata);
                }
                default -> throw new IllegalStateException();
            }
            description.append("]");
        }
        String json = edited.toString();
        if (!suffix.isEmpty()) {
            // Textual edits that a JSON tree cannot hold: a duplicated key, unbalanced brackets, trailing bytes.
            json = suffix.startsWith(",") ? json.substring(0, json.length() - 1) + suffix + "}" : json + suffix;
            description.append(" suffix ").append(suffix.replace("\u0000", "\\0"));
        }
        return RawSafetensors.assemble(json, section);
    }

    /**
     * A valid change: the tensors' bytes moved into a random order with random gaps between them, and the offsets
     * rewritten to match. Entries that earlier edits broke are left as they are.
     */
    private byte[] relayout(JsonObject edited, byte[] section) {
        List<String> names = new ArrayList<>();
        for (String n : edited.keySet()) {
            if (rangeOf(edited.get(n), section.length) != null) names.add(n);
        }
        Collections.shuffle(names, random);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(section, 0, section.length);
        for (String n : names) {
            int[] range = rangeOf(edited.get(n), section.length);
            int gap = random.nextInt(9);
            out.write(new byte[gap], 0, gap);
            int begin = out.size();
            out.write(section, range[0], range[1] - range[0]);
            JsonArray offsets = new JsonArray();
            offsets.add(begin);
            offsets.add(out.size());
            edited.getAsJsonObject(n).add("data_offsets", offsets);
        }
        return out.toByteArray();
    }

    /** The byte range of an entry whose offsets are sane, else null. */
    private static int[] rangeOf(JsonElement entry, int dataLength) {
        if (!entry.isJsonObject() || !(entry.getAsJsonObject().get("data_offsets") instanceof JsonArray offsets)
                || offsets.size() != 2) return null;
        for (JsonElement o : offsets) {
            if (!o.isJsonPrimitive() || !o.getAsJsonPrimitive().isNumber()) return null;
        }
        double begin = offsets.get(0).getAsDouble();
        double end = offsets.get(1).getAsDouble();
        if (begin < 0 || end < begin || end > dataLength || begin != Math.rint(begin) || end != Math.rint(end)) return null;
        return new int[] {(int) begin, (int) end};
    }

    private JsonArray randomShape() {
        JsonArray shape = new JsonArray();
        int rank = random.nextInt(4);
        for (int d = 0; d < rank; d++) shape.add(randomNumber());
        if (random.nextInt(5) == 0) shape.add(junk());
        return shape;
    }

    private JsonElement randomOffsets(JsonObject edited, int dataLength) {
        JsonArray offsets = new JsonArray();
        int count = random.nextInt(8) == 0 ? random.nextInt(4) : 2;
        for (int k = 0; k < count; k++) {
            offsets.add(random.nextBoolean() ? new JsonPrimitive(random.nextInt(dataLength + 24) - 4) : randomNumber());
        }
        return random.nextInt(10) == 0 ? junk() : offsets;
    }

    private JsonPrimitive randomNumber() {
        return switch (random.nextInt(9)) {
            case 0 -> new JsonPrimitive(-1 - random.nextInt(5));
            case 1 -> new JsonPrimitive(random.nextInt(3) + 0.5);
            case 2 -> new JsonPrimitive(Long.MAX_VALUE - random.nextInt(3));
            case 3 -> new JsonPrimitive(BigInteger.ONE.shiftLeft(63 + random.nextInt(80)));
            case 4 -> new JsonPrimitive(1L << (20 + random.nextInt(40)));
            case 5 -> new JsonPrimitive(1e300);
            default -> new JsonPrimitive(random.nextInt(6));
        };
    }

    private JsonElement junk() {
        return switch (random.nextInt(8)) {
            case 0 -> JsonNull.INSTANCE;
            case 1 -> new JsonPrimitive("junk");
            case 2 -> new JsonPrimitive(random.nextInt());
            case 3 -> new JsonPrimitive(true);
            case 4 -> new JsonArray();
            case 5 -> new JsonObject();
            case 6 -> nested(1 + random.nextInt(400));
            default -> {
                JsonObject o = new JsonObject();
                o.add("dtype", new JsonArray());
                o.add("shape", new JsonObject());
                yield o;
            }
        };
    }

    private static JsonElement nested(int depth) {
        JsonElement inner = new JsonPrimitive(1);
        for (int d = 0; d < depth; d++) {
            JsonArray array = new JsonArray();
            array.add(inner);
            inner = array;
        }
        return inner;
    }

    private JsonObject metadataWithJunk() {
        JsonObject metadata = new JsonObject();
        metadata.addProperty("format", "pt");
        metadata.add("k" + random.nextInt(3), random.nextBoolean() ? new JsonPrimitive("v") : junk());
        return metadata;
    }

    private static void shiftOffsets(JsonElement entry, int delta) {
        if (!entry.isJsonObject() || !entry.getAsJsonObject().has("data_offsets")) return;
        JsonElement offsets = entry.getAsJsonObject().get("data_offsets");
        if (!offsets.isJsonArray()) return;
        JsonArray shifted = new JsonArray();
        for (JsonElement o : offsets.getAsJsonArray()) {
            shifted.add(o.isJsonPrimitive() && o.getAsJsonPrimitive().isNumber() ? new JsonPrimitive(o.getAsLong() + delta) : o);
        }
        entry.getAsJsonObject().add("data_offsets", shifted);
    }

    private <T> T pick(Collection<T> options) {
        List<T> list = List.copyOf(options);
        return list.get(random.nextInt(list.size()));
    }
}
