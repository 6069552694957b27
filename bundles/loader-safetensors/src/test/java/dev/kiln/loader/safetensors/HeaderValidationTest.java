package dev.kiln.loader.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.tensor.DType;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Each rule of the header's validation, one malformed header at a time, and the unusual headers that are valid. */
class HeaderValidationTest {
    private static final byte[] DATA = new byte[16];

    @TempDir
    Path folder;

    static Stream<Arguments> malformedHeaders() {
        String deep = "[".repeat(300) + "]".repeat(300);
        return Stream.of(
                Arguments.of("[]", null, "not a JSON object"),
                Arguments.of("", null, "not valid JSON"),
                Arguments.of("{\"a\": 1}", "a", "entry must be an object"),
                Arguments.of("{\"a\": [\"F32\"]}", "a", "entry must be an object"),
                Arguments.of("{\"a\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", "a", "dtype is missing"),
                Arguments.of("{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", "a", "shape is missing"),
                Arguments.of("{\"a\": {\"dtype\": \"F32\", \"shape\": [2]}}", "a", "data_offsets is missing"),
                Arguments.of(entry("\"F4\"", "[2]", "[0, 8]"), "a", "unknown dtype 'F4'"),
                Arguments.of(entry("\"f32\"", "[2]", "[0, 8]"), "a", "unknown dtype 'f32'"),
                Arguments.of(entry("5", "[2]", "[0, 8]"), "a", "dtype must be a string"),
                Arguments.of(entry("\"F32\"", "[-1]", "[0, 8]"), "a", "negative number -1"),
                Arguments.of(entry("\"F32\"", "[1.5]", "[0, 8]"), "a", "1.5, not an integer"),
                Arguments.of(entry("\"F32\"", "[2e0]", "[0, 8]"), "a", "not an integer"),
                Arguments.of(entry("\"F32\"", "[\"2\"]", "[0, 8]"), "a", "shape must hold only integers"),
                Arguments.of(entry("\"F32\"", "2", "[0, 8]"), "a", "shape must be an array"),
                Arguments.of(entry("\"F32\"", "[99999999999999999999]", "[0, 8]"), "a", "too large"),
                Arguments.of(entry("\"F32\"", "[9223372036854775808]", "[0, 8]"), "a", "too large"),
                Arguments.of(entry("\"F32\"", "[4294967296, 4294967296]", "[0, 8]"), "a", "more bytes than a file can hold"),
                Arguments.of(entry("\"F32\"", "[" + "1, ".repeat(64) + "1]", "[0, 4]"), "a", "more than 64 entries"),
                Arguments.of(entry("\"F32\"", "[2]", "[0]"), "a", "two integers"),
                Arguments.of(entry("\"F32\"", "[2]", "[0, 8, 16]"), "a", "more than 2 entries"),
                Arguments.of(entry("\"F32\"", "[2]", "[-8, 0]"), "a", "negative"),
                Arguments.of(entry("\"F32\"", "[2]", "[8, 0]"), "a", "begin after they end"),
                Arguments.of(entry("\"F32\"", "[6]", "[0, 24]"), "a", "beyond the data section of 16 bytes"),
                Arguments.of(entry("\"F32\"", "[3]", "[0, 8]"), "a", "needs 12 bytes"),
                Arguments.of(entry("\"BF16\"", "[2, 2]", "[0, 16]"), "a", "needs 8 bytes"),
                Arguments.of("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                        + " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", "b", "overlap those of 'a'"),
                Arguments.of("{\"b\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [0, 16]},"
                        + " \"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [15, 16]}}", "a", "overlap those of 'b'"),
                Arguments.of("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                        + " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}", "a", "appears twice"),
                Arguments.of("{\"a\": {\"dtype\": \"F32\", \"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                        "a", "dtype appears twice"),
                Arguments.of("{\"__metadata__\": {\"format\": 1}}", "__metadata__.format", "must be a string"),
                Arguments.of("{\"__metadata__\": [\"pt\"]}", "__metadata__", "must be an object"),
                Arguments.of("{} {}", null, "not valid JSON"),
                Arguments.of("{}x", null, "not valid JSON"),
                Arguments.of("{'a': 1}", null, "not valid JSON"),
                Arguments.of(entry("\"F32\"", "[NaN]", "[0, 8]"), null, "not valid JSON"),
                Arguments.of("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8], \"x\": " + deep + "}}",
                        null, "not valid JSON"),
                Arguments.of("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}", null, "not valid JSON"));
    }

    private static String entry(String dtype, String shape, String offsets) {
        return "{\"a\": {\"dtype\": " + dtype + ", \"shape\": " + shape + ", \"data_offsets\": " + offsets + "}}";
    }

    @ParameterizedTest
    @MethodSource("malformedHeaders")
    void malformedHeaderIsRefusedNamingTheFileAndField(String header, String field, String reason) throws IOException {
        Path file = write(RawSafetensors.assemble(header, DATA));
        InvalidCheckpointException e = assertThrows(InvalidCheckpointException.class, () -> SafetensorsFile.open(file));
        assertEquals(file, e.file());
        assertTrue(e.getMessage().startsWith(file.toString()), e.getMessage());
        assertTrue(e.getMessage().contains(reason), () -> "expected '" + reason + "' in: " + e.getMessage());
        if (field != null) assertEquals(field, e.field());
    }

    @Test
    void fileShorterThanTheLengthPrefixIsRefused() throws IOException {
        for (int size = 0; size < 8; size++) {
            Path file = write(new byte[size]);
            InvalidCheckpointException e = assertThrows(InvalidCheckpointException.class, () -> SafetensorsFile.open(file));
            assertEquals(file, e.file());
            assertTrue(e.getMessage().contains("fewer than the 8"), e.getMessage());
        }
    }

    @Test
    void headerLengthBeyondTheFileIsRefused() throws IOException {
        byte[] valid = RawSafetensors.assemble("{}", DATA);
        for (long length : new long[] {valid.length - 7, Long.MAX_VALUE, -1L, Long.MIN_VALUE}) {
            ByteBuffer.wrap(valid).order(ByteOrder.LITTLE_ENDIAN).putLong(0, length);
            Path file = write(valid);
            InvalidCheckpointException e = assertThrows(InvalidCheckpointException.class, () -> SafetensorsFile.open(file));
            assertEquals("header length", e.field());
            assertTrue(e.getMessage().contains(Long.toUnsignedString(length)), e.getMessage());
        }
    }

    /** A sparse file long enough that only the 100 MB limit can refuse its header length. */
    @Test
    void headerLengthBeyondTheLimitIsRefused() throws IOException {
        Path file = folder.resolve("huge-header.safetensors");
        long length = 100_000_008L;
        try (RandomAccessFile out = new RandomAccessFile(file.toFile(), "rw")) {
            out.setLength(length + 8 + 64);
            out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(length).array());
        }
        InvalidCheckpointException e = assertThrows(InvalidCheckpointException.class, () -> SafetensorsFile.open(file));
        assertEquals("header length", e.field());
        assertTrue(e.getMessage().contains("limit of 100000000"), e.getMessage());
    }

    @Test
    void headerThatIsNotUtf8IsRefused() throws IOException {
        byte[] bytes = RawSafetensors.assemble("{\"__metadata__\": {\"k\": \"v\"}}", DATA);
        bytes[8 + 20] = (byte) 0xFF;
        Path file = write(bytes);
        InvalidCheckpointException e = assertThrows(InvalidCheckpointException.class, () -> SafetensorsFile.open(file));
        assertTrue(e.getMessage().contains("not valid UTF-8"), e.getMessage());
    }

    @Test
    void unusualButValidHeadersAreAccepted() throws IOException {
        String header = "{\"__metadata__\": {\"format\": \"pt\", \"note\": \"caf\u00e9\"},"
                + " \"empty\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [4, 4]},"
                + " \"scalar\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4], \"extra\": {\"nested\": [1, [2]]}},"
                + " \"gap_before\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [8, 12]},"
                + " \"\u540d\": {\"dtype\": \"BOOL\", \"shape\": [1, 1], \"data_offsets\": [12, 13]}}";
        byte[] data = new byte[16];
        ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN).putFloat(0, 2.5f).putShort(8, (short) 0x3F80).putShort(10, (short) 0xC000);
        data[12] = 1;
        Path file = write(RawSafetensors.assemble(header, data));
        try (SafetensorsFile opened = SafetensorsFile.open(file)) {
            assertEquals(Map.of("format", "pt", "note", "caf\u00e9"), opened.metadata());
            assertEquals(List.of("empty", "scalar", "gap_before", "\u540d"), List.copyOf(opened.tensors().keySet()));
            CheckpointTensor empty = opened.tensor("empty");
            assertEquals(0, empty.data().byteSize());
            assertEquals(0, TensorValues.toFloats(empty).length);
            CheckpointTensor scalar = opened.tensor("scalar");
            assertEquals(1, scalar.size());
            assertArrayEquals(new float[] {2.5f}, TensorValues.toFloats(scalar));
            assertArrayEquals(new float[] {1f, -2f}, TensorValues.toFloats(opened.tensor("gap_before")));
            assertEquals(DType.BOOL, opened.tensor("\u540d").dtype());
            assertArrayEquals(new long[] {1}, TensorValues.toLongs(opened.tensor("\u540d")));
            assertEquals(4 + 4 + 1, opened.dataBytes());
            assertNull(opened.find("missing").orElse(null));
            InvalidCheckpointException missing = assertThrows(InvalidCheckpointException.class, () -> opened.tensor("missing"));
            assertEquals("missing", missing.field());
        }
    }

    @Test
    void closedFileRefusesReads() throws IOException {
        Path file = write(RawSafetensors.assemble(entry("\"F32\"", "[4]", "[0, 16]"), DATA));
        SafetensorsFile opened = SafetensorsFile.open(file);
        CheckpointTensor tensor = opened.tensor("a");
        assertEquals(4, TensorValues.toFloats(tensor).length);
        opened.close();
        opened.close();
        assertThrows(IllegalStateException.class, () -> TensorValues.toFloats(tensor));
    }

    private Path write(byte[] bytes) throws IOException {
        Path file = Files.createTempFile(folder, "header", ".safetensors");
        Files.write(file, bytes);
        return file;
    }
}
