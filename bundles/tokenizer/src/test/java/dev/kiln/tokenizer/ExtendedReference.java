package dev.kiln.tokenizer;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.kiln.api.tokenizer.ChatMessage;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The extended reference ({@code extended-reference.json}, made by {@code src/test/python/make_reference.py} with
 * {@code tokenizers} 0.23.2 and {@code transformers} 5.17.0 from the fixture tokenizers): hard and seeded random
 * strings, invalid UTF-8 byte tokens, special-token encodings and richer chat renderings.
 */
public final class ExtendedReference {
    private static final JsonObject ROOT = load();

    private ExtendedReference() {}

    private static JsonObject load() {
        try (InputStream in = ExtendedReference.class.getResourceAsStream("extended-reference.json")) {
            if (in == null) {
                throw new IllegalStateException("extended-reference.json is missing from the test resources");
            }
            return JsonParser.parseString(new String(in.readAllBytes(), StandardCharsets.UTF_8)).getAsJsonObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static JsonObject model(String name) {
        return ROOT.getAsJsonObject("models").getAsJsonObject(name);
    }

    /** An encoding with its decodings, special tokens kept and skipped. */
    public record EncodingCase(String tokenizer, String text, int[] ids, String decoded, String decodedSkippingSpecial) {
        @Override
        public String toString() {
            String shown = text.length() > 30 ? text.substring(0, 30) + "..." : text;
            return tokenizer + ": " + shown.replace("\n", "\\n").replace("\r", "\\r");
        }
    }

    /** Byte tokens and their lossy decoding. */
    public record InvalidUtf8Case(String tokenizer, int[] bytes, int[] ids, String decoded) {
        @Override
        public String toString() {
            return tokenizer + ": " + java.util.Arrays.toString(bytes);
        }
    }

    /** An encoding with the post-processor's special tokens. */
    public record SpecialCase(String tokenizer, String text, int[] ids) {}

    /** A chat rendering; {@code template} is null for the model's own template. */
    public record ChatCase(String tokenizer, String template, List<ChatMessage> messages, boolean addGenerationPrompt,
                           Map<String, Object> variables, String prompt) {
        @Override
        public String toString() {
            return tokenizer + ": " + (template == null ? "model template" : "Python-isms template") + ", "
                    + messages.size() + " messages";
        }
    }

    public static List<EncodingCase> encodingCases() {
        List<EncodingCase> cases = new ArrayList<>();
        for (String name : Fixtures.NAMES) {
            for (JsonElement e : model(name).getAsJsonArray("cases")) {
                JsonObject c = e.getAsJsonObject();
                cases.add(new EncodingCase(name, c.get("text").getAsString(), ints(c.getAsJsonArray("ids")),
                        c.get("decoded").getAsString(), c.get("decoded_skip_special").getAsString()));
            }
        }
        return cases;
    }

    public static List<InvalidUtf8Case> invalidUtf8Cases() {
        List<InvalidUtf8Case> cases = new ArrayList<>();
        for (String name : Fixtures.NAMES) {
            for (JsonElement e : model(name).getAsJsonArray("invalid_utf8")) {
                JsonObject c = e.getAsJsonObject();
                cases.add(new InvalidUtf8Case(name, ints(c.getAsJsonArray("bytes")), ints(c.getAsJsonArray("ids")),
                        c.get("decoded").getAsString()));
            }
        }
        return cases;
    }

    public static List<SpecialCase> specialCases() {
        List<SpecialCase> cases = new ArrayList<>();
        for (String name : Fixtures.NAMES) {
            for (JsonElement e : model(name).getAsJsonArray("special_tokens")) {
                JsonObject c = e.getAsJsonObject();
                cases.add(new SpecialCase(name, c.get("text").getAsString(), ints(c.getAsJsonArray("tokenizers_ids"))));
            }
        }
        return cases;
    }

    public static List<ChatCase> chatCases() {
        List<ChatCase> cases = new ArrayList<>();
        for (String name : Fixtures.NAMES) {
            for (JsonElement e : model(name).getAsJsonArray("chat")) {
                JsonObject c = e.getAsJsonObject();
                String template = c.get("template").getAsString();
                List<ChatMessage> messages = new ArrayList<>();
                for (JsonElement m : c.getAsJsonArray("messages")) {
                    messages.add(message(m.getAsJsonObject()));
                }
                Map<String, Object> variables = new LinkedHashMap<>();
                c.getAsJsonObject("variables").entrySet().forEach(v -> variables.put(v.getKey(), v.getValue()));
                cases.add(new ChatCase(name, template.equals("model") ? null : template, messages,
                        c.get("add_generation_prompt").getAsBoolean(), variables, c.get("prompt").getAsString()));
            }
        }
        return cases;
    }

    /** A message as a server would pass it: role and content, other fields as they came (JSON trees). */
    private static ChatMessage message(JsonObject m) {
        Map<String, Object> extra = new LinkedHashMap<>();
        m.entrySet().forEach(e -> {
            if (!e.getKey().equals("role") && !e.getKey().equals("content")) {
                extra.put(e.getKey(), e.getValue());
            }
        });
        JsonElement content = m.get("content");
        return new ChatMessage(m.get("role").getAsString(),
                content == null || content.isJsonNull() ? null : content.getAsString(), extra);
    }

    private static int[] ints(JsonArray array) {
        int[] values = new int[array.size()];
        for (int i = 0; i < values.length; i++) {
            values[i] = array.get(i).getAsInt();
        }
        return values;
    }
}
