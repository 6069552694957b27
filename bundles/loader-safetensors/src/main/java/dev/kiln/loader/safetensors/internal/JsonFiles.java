package dev.kiln.loader.safetensors.internal;

import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import java.io.IOException;
import java.io.StringReader;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads the small JSON files of a checkpoint folder ({@code config.json}, {@code model.safetensors.index.json})
 * strictly: UTF-8 only, standard JSON only, no key twice in an object. Objects become unmodifiable {@link Map}s in
 * file order, arrays unmodifiable {@link List}s, integers that fit become {@link Long} and other numbers
 * {@link Double}.
 */
public final class JsonFiles {
    /** Far above any real configuration or shard index; a bound on what a corrupt file can make us allocate. */
    static final long MAX_JSON_BYTES = 64L << 20;

    private JsonFiles() {}

    /**
     * Reads a file whose top level must be a JSON object.
     *
     * @throws InvalidCheckpointException when the file is missing, too large, not UTF-8, not JSON or not an object
     * @throws IOException                when the file cannot be read
     */
    public static Map<String, Object> readObject(Path file) throws IOException {
        String text = readText(file);
        try {
            JsonReader in = new JsonReader(new StringReader(text));
            in.setStrictness(Strictness.STRICT);
            if (in.peek() != JsonToken.BEGIN_OBJECT) {
                throw new InvalidCheckpointException(file, null, "is not a JSON object");
            }
            Object tree = new TreeReader(file).read(in);
            if (in.peek() != JsonToken.END_DOCUMENT) {
                throw new InvalidCheckpointException(file, null, "has data after its JSON object");
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> object = (Map<String, Object>) tree;
            return object;
        } catch (IOException | IllegalStateException | NumberFormatException malformed) {
            // Reading from a string, every IOException is a syntax error.
            throw new InvalidCheckpointException(file, null, "is not valid JSON: " + malformed.getMessage(), malformed);
        }
    }

    private static String readText(Path file) throws IOException {
        if (!Files.exists(file)) throw new InvalidCheckpointException(file, null, "is missing");
        if (!Files.isRegularFile(file)) throw new InvalidCheckpointException(file, null, "is not a regular file");
        long size = Files.size(file);
        if (size > MAX_JSON_BYTES) {
            throw new InvalidCheckpointException(file, null, "has " + size + " bytes, more than the limit of "
                    + MAX_JSON_BYTES + " for a JSON file");
        }
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(file);
        } catch (NoSuchFileException vanished) {
            throw new InvalidCheckpointException(file, null, "is missing", vanished);
        }
        try {
            return StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException notUtf8) {
            throw new InvalidCheckpointException(file, null, "is not valid UTF-8", notUtf8);
        }
    }

    /**
     * The number a JSON literal denotes: a {@link Long} when it is an integer in range (so that token ids and sizes
     * stay exact), otherwise a {@link Double}.
     */
    static Number number(String literal) {
        boolean integral = !literal.isEmpty();
        for (int i = 0; i < literal.length() && integral; i++) {
            char c = literal.charAt(i);
            integral = (c >= '0' && c <= '9') || (i == 0 && c == '-' && literal.length() > 1);
        }
        if (integral && literal.length() <= 20) {
            try {
                return Long.parseLong(literal);
            } catch (NumberFormatException outOfRange) {
                // falls through to a double, as for any integer beyond a long
            }
        }
        return Double.parseDouble(literal);
    }

    /** Builds the tree; recursion depth is bounded by the reader's nesting limit. */
    private record TreeReader(Path file) {
        Object read(JsonReader in) throws IOException {
            return switch (in.peek()) {
                case BEGIN_OBJECT -> {
                    Map<String, Object> object = new LinkedHashMap<>();
                    in.beginObject();
                    while (in.hasNext()) {
                        String key = in.nextName();
                        if (object.containsKey(key)) {
                            throw new InvalidCheckpointException(file, in.getPath(), "appears twice in its object");
                        }
                        object.put(key, read(in));
                    }
                    in.endObject();
                    yield Collections.unmodifiableMap(object);
                }
                case BEGIN_ARRAY -> {
                    List<Object> array = new ArrayList<>();
                    in.beginArray();
                    while (in.hasNext()) array.add(read(in));
                    in.endArray();
                    yield Collections.unmodifiableList(array);
                }
                case STRING -> in.nextString();
                case NUMBER -> number(in.nextString());
                case BOOLEAN -> in.nextBoolean();
                case NULL -> {
                    in.nextNull();
                    yield null;
                }
                case NAME, END_ARRAY, END_OBJECT, END_DOCUMENT ->
                        throw new IllegalStateException("unexpected " + in.peek() + " at " + in.getPath());
            };
        }
    }
}
