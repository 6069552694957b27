package dev.kiln.loader.safetensors.internal;

import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.tensor.DType;
import java.io.IOException;
import java.io.StringReader;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The JSON header of one safetensors file, parsed and checked against the size of the data section that follows
 * it. Every entry of a header that passes {@link #parse} describes bytes that lie inside the data section, match
 * the tensor's dtype and shape exactly, and overlap no other tensor's bytes.
 *
 * <p>The header is read as a stream rather than as a tree, so a hostile header within the size limit cannot make
 * the parser hold more than the entries it describes; unknown fields of an entry are skipped (as the reference
 * implementation does), but no field may appear twice.
 */
public final class SafetensorsHeader {
    /** The reference implementation's limit on the header's length, which keeps parsing bounded. */
    public static final long MAX_HEADER_BYTES = 100_000_000L;
    /** The key of the optional string-to-string metadata object. */
    public static final String METADATA_KEY = "__metadata__";
    /** More dimensions than any model uses: a guard against shapes that are only there to exhaust memory. */
    static final int MAX_RANK = 64;

    /**
     * One tensor as the header describes it.
     *
     * @param name  the tensor's name
     * @param dtype its element type
     * @param shape its dimensions, outermost first
     * @param begin offset of its first byte, relative to the start of the data section
     * @param end   offset just past its last byte
     */
    public record Entry(String name, DType dtype, long[] shape, long begin, long end) {
        /** Bytes the tensor occupies. */
        public long byteLength() {
            return end - begin;
        }
    }

    private final List<Entry> entries;
    private final Map<String, String> metadata;

    private SafetensorsHeader(List<Entry> entries, Map<String, String> metadata) {
        this.entries = List.copyOf(entries);
        this.metadata = Collections.unmodifiableMap(metadata);
    }

    /** The tensors in the order the header lists them. */
    public List<Entry> entries() {
        return entries;
    }

    /** The {@code __metadata__} object, empty when absent. */
    public Map<String, String> metadata() {
        return metadata;
    }

    /**
     * Parses and validates a header.
     *
     * @param file       the file it comes from, named in every error
     * @param json       the header text, already decoded as strict UTF-8
     * @param dataLength bytes in the data section after the header
     * @throws InvalidCheckpointException when the header is malformed or disagrees with the data section
     */
    public static SafetensorsHeader parse(Path file, String json, long dataLength) {
        SafetensorsHeader header = new Reader(file).read(json);
        header.validateAgainst(file, dataLength);
        return header;
    }

    private void validateAgainst(Path file, long dataLength) {
        for (Entry e : entries) {
            if (e.begin > e.end) {
                throw new InvalidCheckpointException(file, e.name,
                        "data_offsets [" + e.begin + ", " + e.end + "] begin after they end");
            }
            if (e.end > dataLength) {
                throw new InvalidCheckpointException(file, e.name, "data_offsets [" + e.begin + ", " + e.end
                        + "] end beyond the data section of " + dataLength + " bytes");
            }
            long expected = byteLength(file, e);
            if (expected != e.byteLength()) {
                throw new InvalidCheckpointException(file, e.name, "shape " + Arrays.toString(e.shape) + " of "
                        + e.dtype + " needs " + expected + " bytes but data_offsets [" + e.begin + ", " + e.end
                        + "] span " + e.byteLength());
            }
        }
        // Empty tensors own no bytes, so only the others can collide; sorted by start, each must begin at or after
        // the end of the one before it.
        List<Entry> byOffset = new ArrayList<>();
        for (Entry e : entries) {
            if (e.byteLength() > 0) byOffset.add(e);
        }
        byOffset.sort(Comparator.comparingLong(Entry::begin));
        for (int i = 1; i < byOffset.size(); i++) {
            Entry previous = byOffset.get(i - 1);
            Entry current = byOffset.get(i);
            if (current.begin < previous.end) {
                throw new InvalidCheckpointException(file, current.name, "data_offsets [" + current.begin + ", "
                        + current.end + "] overlap those of '" + previous.name + "' [" + previous.begin + ", "
                        + previous.end + "]");
            }
        }
    }

    private static long byteLength(Path file, Entry e) {
        try {
            long elements = 1;
            for (long d : e.shape) elements = Math.multiplyExact(elements, d);
            return Math.multiplyExact(elements, (long) e.dtype.byteSize());
        } catch (ArithmeticException overflow) {
            throw new InvalidCheckpointException(file, e.name,
                    "shape " + Arrays.toString(e.shape) + " of " + e.dtype + " has more bytes than a file can hold");
        }
    }

    /** The streaming parse; one instance per header. */
    private static final class Reader {
        private final Path file;

        Reader(Path file) {
            this.file = file;
        }

        SafetensorsHeader read(String json) {
            try {
                JsonReader in = new JsonReader(new StringReader(json));
                in.setStrictness(Strictness.STRICT);
                JsonToken first = in.peek();
                if (first != JsonToken.BEGIN_OBJECT) {
                    throw new InvalidCheckpointException(file, null, "header is not a JSON object but " + describe(first));
                }
                List<Entry> entries = new ArrayList<>();
                Map<String, String> metadata = new LinkedHashMap<>();
                Set<String> names = new HashSet<>();
                in.beginObject();
                while (in.hasNext()) {
                    String name = in.nextName();
                    if (!names.add(name)) throw new InvalidCheckpointException(file, name, "appears twice in the header");
                    if (name.equals(METADATA_KEY)) {
                        readMetadata(in, metadata);
                    } else {
                        entries.add(readEntry(in, name));
                    }
                }
                in.endObject();
                if (in.peek() != JsonToken.END_DOCUMENT) {
                    throw new InvalidCheckpointException(file, null, "header has data after its JSON object");
                }
                return new SafetensorsHeader(entries, metadata);
            } catch (IOException | IllegalStateException | NumberFormatException malformed) {
                // The reader reads a string, so every IOException it raises is a syntax error (MalformedJsonException,
                // or EOFException for text that ends early); the others guard against token mix-ups.
                throw new InvalidCheckpointException(file, null, "header is not valid JSON: " + malformed.getMessage(),
                        malformed);
            }
        }

        private void readMetadata(JsonReader in, Map<String, String> metadata) throws IOException {
            expect(in, JsonToken.BEGIN_OBJECT, METADATA_KEY, "must be an object of strings");
            in.beginObject();
            while (in.hasNext()) {
                String key = in.nextName();
                if (metadata.containsKey(key)) {
                    throw new InvalidCheckpointException(file, METADATA_KEY + "." + key, "appears twice");
                }
                expect(in, JsonToken.STRING, METADATA_KEY + "." + key, "must be a string");
                metadata.put(key, in.nextString());
            }
            in.endObject();
        }

        private Entry readEntry(JsonReader in, String name) throws IOException {
            expect(in, JsonToken.BEGIN_OBJECT, name, "entry must be an object with dtype, shape and data_offsets");
            String dtypeName = null;
            long[] shape = null;
            long[] offsets = null;
            Set<String> fields = new HashSet<>();
            in.beginObject();
            while (in.hasNext()) {
                String field = in.nextName();
                if (!fields.add(field)) throw new InvalidCheckpointException(file, name, field + " appears twice");
                switch (field) {
                    case "dtype" -> {
                        expect(in, JsonToken.STRING, name, "dtype must be a string");
                        dtypeName = in.nextString();
                    }
                    case "shape" -> shape = readNaturals(in, name, "shape", MAX_RANK);
                    case "data_offsets" -> offsets = readNaturals(in, name, "data_offsets", 2);
                    default -> in.skipValue();
                }
            }
            in.endObject();
            if (dtypeName == null) throw new InvalidCheckpointException(file, name, "dtype is missing");
            if (shape == null) throw new InvalidCheckpointException(file, name, "shape is missing");
            if (offsets == null) throw new InvalidCheckpointException(file, name, "data_offsets is missing");
            String dtypeText = dtypeName;
            DType dtype = DType.fromSafetensors(dtypeText).orElseThrow(() ->
                    new InvalidCheckpointException(file, name, "unknown dtype '" + dtypeText + "'"));
            if (offsets.length != 2) {
                throw new InvalidCheckpointException(file, name,
                        "data_offsets must be two integers [begin, end], found " + offsets.length);
            }
            return new Entry(name, dtype, shape, offsets[0], offsets[1]);
        }

        /** An array of at most {@code maxLength} integers in [0, 2^63), read exactly from their literals. */
        private long[] readNaturals(JsonReader in, String name, String field, int maxLength) throws IOException {
            expect(in, JsonToken.BEGIN_ARRAY, name, field + " must be an array of non-negative integers");
            long[] values = new long[Math.min(maxLength, 8)];
            int count = 0;
            in.beginArray();
            while (in.hasNext()) {
                if (count == maxLength) {
                    throw new InvalidCheckpointException(file, name, field + " has more than " + maxLength + " entries");
                }
                expect(in, JsonToken.NUMBER, name, field + " must hold only integers");
                if (count == values.length) values = Arrays.copyOf(values, Math.min(maxLength, 2 * count));
                values[count++] = natural(in.nextString(), name, field);
            }
            in.endArray();
            return Arrays.copyOf(values, count);
        }

        private long natural(String literal, String name, String field) {
            if (literal.startsWith("-")) {
                throw new InvalidCheckpointException(file, name, field + " holds the negative number " + literal);
            }
            for (int i = 0; i < literal.length(); i++) {
                char c = literal.charAt(i);
                if (c < '0' || c > '9') {
                    throw new InvalidCheckpointException(file, name, field + " holds " + literal + ", not an integer");
                }
            }
            // Strict JSON has no leading zeros, so more than 19 digits is always beyond a long.
            if (literal.length() > 19) {
                throw new InvalidCheckpointException(file, name, field + " holds " + abbreviate(literal) + ", too large");
            }
            try {
                return Long.parseLong(literal);
            } catch (NumberFormatException tooLarge) {
                throw new InvalidCheckpointException(file, name, field + " holds " + literal + ", too large");
            }
        }

        private void expect(JsonReader in, JsonToken expected, String field, String requirement) throws IOException {
            JsonToken actual = in.peek();
            if (actual != expected) {
                throw new InvalidCheckpointException(file, field, requirement + ", found " + describe(actual));
            }
        }

        private static String describe(JsonToken token) {
            return switch (token) {
                case BEGIN_ARRAY -> "an array";
                case END_ARRAY -> "the end of an array";
                case BEGIN_OBJECT -> "an object";
                case END_OBJECT -> "the end of an object";
                case NAME -> "a name";
                case STRING -> "a string";
                case NUMBER -> "a number";
                case BOOLEAN -> "a boolean";
                case NULL -> "null";
                case END_DOCUMENT -> "nothing";
            };
        }

        private static String abbreviate(String literal) {
            return literal.length() <= 40 ? literal : literal.substring(0, 20) + "..." + " (" + literal.length() + " digits)";
        }
    }
}
