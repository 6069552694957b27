package dev.kiln.server.structured;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class JsonPrefixTest {
    private static final Gson GSON = new Gson();

    @Test
    void everyPrefixOfAnObjectIsAcceptedAndOnlyTheWholeIsComplete() {
        for (String json : new String[] {
            "{}",
            "{\"a\":1}",
            " {\n  \"name\": \"Grüße\",\n  \"n\": -0.5e+10,\n  \"ok\": true,\n  \"none\": null,\n  \"list\": [1, [], {}, \"x\", false]\n}",
            "{\"esc\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\",\"zero\":0,\"e\":1E5,\"neg\":-12.25}",
            "{\"deep\":[[[[{\"k\":[0]}]]]]}",
        }) {
            JsonPrefix p = new JsonPrefix();
            byte[] bytes = json.getBytes(StandardCharsets.UTF_8);
            for (int i = 0; i < bytes.length; i++) {
                assertFalse(p.complete(), json + " complete after " + i + " bytes");
                assertTrue(p.accept(bytes[i]), json + " refused at byte " + i);
            }
            assertTrue(p.complete(), json);
            assertFalse(new JsonPrefix().accept(" ".repeat(JsonPrefix.MAX_LEADING_BLANKS + 1).getBytes()), "unbounded blanks");
            assertFalse(new JsonPrefix().accept(("{" + " ".repeat(JsonPrefix.MAX_BLANKS + 1)).getBytes()), "unbounded blanks");
        }
    }

    @Test
    void textThatBeginsNoObjectIsRefused() {
        for (String bad : new String[] {"[]", "\"a\"", "1", "{\"a\" 1}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":-}", "{,}",
            "{\"a\":1,}", "{\"a\":tru}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12g4\"}", "{\"a\":1}}", "{\"a\":1} x", "{\"a\":[1}",
            "{\"a\":\"tab\there\"}", "{1:2}", "{\"a\":1e}", "{\"a\":.5}", "{\"a\":+1}", "{\"a\":nul}"}) {
            JsonPrefix p = new JsonPrefix();
            boolean all = p.accept(bad.getBytes(StandardCharsets.UTF_8));
            assertFalse(all && p.complete(), bad + " accepted as a complete object");
            assertFalse(all && strictObject(bad), "the test's own case is valid JSON: " + bad);
        }
    }

    @Test
    void nestingDeeperThanTheLimitIsRefused() {
        JsonPrefix p = new JsonPrefix();
        assertTrue(p.accept("{\"a\":".getBytes()));
        for (int d = 1; d < JsonPrefix.MAX_DEPTH; d++) assertTrue(p.accept((byte) '['), "depth " + (d + 1));
        assertFalse(p.accept((byte) '['));
    }

    /**
     * Random short texts over JSON's own alphabet, checked against Gson's strict parser both ways: what the recognizer
     * completes is one object to Gson, and every object Gson reads is completed byte by byte.
     */
    @Test
    void randomTextsAgreeWithAStrictParser() {
        String alphabet = "{}[]:,\"\"\"a1-0.eE+tfnrul \\\n";
        SplittableRandom random = new SplittableRandom(11);
        int objects = 0;
        for (int round = 0; round < 300_000; round++) {
            StringBuilder s = new StringBuilder("{");
            int length = random.nextInt(1, 14);
            for (int i = 0; i < length; i++) s.append(alphabet.charAt(random.nextInt(alphabet.length())));
            if (random.nextBoolean()) s.append('}');
            String text = s.toString();
            JsonPrefix p = new JsonPrefix();
            boolean complete = p.accept(text.getBytes(StandardCharsets.UTF_8)) && p.complete();
            boolean valid = strictObject(text);
            assertEquals(valid, complete, () -> "recognizer and parser disagree on " + text);
            if (valid) objects++;
        }
        assertTrue(objects > 100, "too few valid objects drawn to mean anything: " + objects);
    }

    /** Random objects written with random spacing: every one is accepted to its end. */
    @Test
    void randomObjectsAreAcceptedWhole() {
        SplittableRandom random = new SplittableRandom(5);
        for (int round = 0; round < 2000; round++) {
            StringBuilder s = new StringBuilder();
            object(s, random, 0);
            String text = s.toString();
            assertTrue(strictObject(text), text);
            JsonPrefix p = new JsonPrefix();
            assertTrue(p.accept(text.getBytes(StandardCharsets.UTF_8)) && p.complete(), text);
        }
    }

    private static void object(StringBuilder s, SplittableRandom random, int depth) {
        s.append('{').append(blank(random));
        int n = random.nextInt(depth > 3 ? 1 : 4);
        for (int i = 0; i < n; i++) {
            if (i > 0) s.append(',').append(blank(random));
            s.append(GSON.toJson("k" + random.nextInt(100) + (random.nextBoolean() ? "é\"\n" : ""))).append(blank(random)).append(':')
                    .append(blank(random));
            value(s, random, depth + 1);
            s.append(blank(random));
        }
        s.append('}');
    }

    private static void value(StringBuilder s, SplittableRandom random, int depth) {
        switch (random.nextInt(depth > 3 ? 4 : 6)) {
            case 0 -> s.append(random.nextBoolean() ? "true" : random.nextBoolean() ? "false" : "null");
            case 1 -> s.append(random.nextInt(-1000, 1000)).append(random.nextBoolean() ? "" : "." + random.nextInt(100))
                    .append(random.nextBoolean() ? "" : "e" + (random.nextBoolean() ? "-" : "") + random.nextInt(20));
            case 2 -> s.append(GSON.toJson("v\\" + random.nextInt() + "\t\u0001☃"));
            case 3 -> s.append(random.nextDouble());
            case 4 -> object(s, random, depth);
            default -> {
                s.append('[').append(blank(random));
                int n = random.nextInt(3);
                for (int i = 0; i < n; i++) {
                    if (i > 0) s.append(',').append(blank(random));
                    value(s, random, depth + 1);
                }
                s.append(blank(random)).append(']');
            }
        }
    }

    private static String blank(SplittableRandom random) {
        return switch (random.nextInt(4)) {
            case 0 -> " ";
            case 1 -> "\n  ";
            default -> "";
        };
    }

    /** Whether Gson, strictly, reads the text as one JSON object and nothing after it. */
    private static boolean strictObject(String text) {
        try {
            JsonReader reader = new JsonReader(new StringReader(text));
            reader.setStrictness(Strictness.STRICT);
            JsonElement e = GSON.getAdapter(JsonElement.class).read(reader);
            return e.isJsonObject() && reader.peek() == JsonToken.END_DOCUMENT;
        } catch (Exception | StackOverflowError e) {
            return false;
        }
    }
}
