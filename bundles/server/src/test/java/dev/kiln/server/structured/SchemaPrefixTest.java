package dev.kiln.server.structured;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class SchemaPrefixTest {
    /** OpenAI's structured-output style: every property required, no others, a nullable field, a definition. */
    private static final String PERSON = """
            {"type": "object", "additionalProperties": false, "required": ["name", "age", "tags", "status", "home", "note"],
             "properties": {
               "name": {"type": "string", "description": "full name"},
               "age": {"type": "integer"},
               "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
               "status": {"enum": ["active", "retired", 7, null]},
               "home": {"$ref": "#/$defs/place"},
               "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Note"},
               "born": {"type": "string", "format": "date"}},
             "$defs": {"place": {"type": "object", "required": ["city"], "additionalProperties": false,
                                 "properties": {"city": {"type": "string"}, "zip": {"type": "number"}}}}}""";

    private static JsonSchema person() {
        return JsonSchema.compile(JsonParser.parseString(PERSON).getAsJsonObject());
    }

    private static boolean completes(JsonSchema schema, String text) {
        SchemaPrefix p = new SchemaPrefix(schema);
        return p.accept(text.getBytes(StandardCharsets.UTF_8)) && p.complete();
    }

    @Test
    void objectsThatFollowTheSchemaAreAcceptedWhole() {
        JsonSchema schema = person();
        for (String ok : new String[] {
            "{\"name\":\"Ada\",\"age\":36,\"tags\":[\"a\",\"b\",\"c\"],\"status\":\"active\",\"home\":{\"city\":\"London\"},\"note\":null}",
            "{ \"note\": \"x\", \"home\": {\"zip\": 1.5e3, \"city\": \"\"}, \"status\": 7, \"tags\": [\"a\", \"b\"], \"age\": -2,"
                    + " \"name\": \"B\\\"ob\" }",
            "{\"name\":\"C\",\"age\":0,\"tags\":[\"x\"],\"status\":null,\"home\":{\"city\":\"P\"},\"note\":\"n\"}",
        }) {
            assertTrue(completes(schema, ok), ok);
            assertTrue(valid(JsonParser.parseString(ok), JsonParser.parseString(PERSON).getAsJsonObject()), ok);
        }
    }

    @Test
    void objectsThatBreakTheSchemaAreRefused() {
        JsonSchema schema = person();
        String base = "\"tags\":[\"t\"],\"status\":\"active\",\"home\":{\"city\":\"L\"},\"note\":null";
        for (String bad : new String[] {
            "{\"name\":1,\"age\":36," + base + "}", // a number for a string
            "{\"name\":\"A\",\"age\":3.5," + base + "}", // a fraction for an integer
            "{\"name\":\"A\",\"age\":3e2," + base + "}",
            "{\"name\":\"A\"," + base + "}", // age missing
            "{\"name\":\"A\",\"age\":1,\"extra\":1," + base + "}", // no other keys
            "{\"name\":\"A\",\"name\":\"B\",\"age\":1," + base + "}", // given twice
            "{\"name\":\"A\",\"age\":1,\"tags\":[1],\"status\":\"active\",\"home\":{\"city\":\"L\"},\"note\":null}",
            "{\"name\":\"A\",\"age\":1,\"tags\":[\"t\"],\"status\":\"activ\",\"home\":{\"city\":\"L\"},\"note\":null}",
            "{\"name\":\"A\",\"age\":1,\"tags\":[\"t\"],\"status\":8,\"home\":{\"city\":\"L\"},\"note\":null}",
            "{\"name\":\"A\",\"age\":1,\"tags\":[\"t\"],\"status\":true,\"home\":{\"city\":\"L\"},\"note\":null}",
            "{\"name\":\"A\",\"age\":1,\"tags\":[\"t\"],\"status\":null,\"home\":{},\"note\":null}", // city missing
            "{\"name\":\"A\",\"age\":1,\"tags\":[\"t\"],\"status\":null,\"home\":{\"city\":\"L\"},\"note\":false}",
            "{\"name\":\"A\",\"age\":1," + base + ",}",
            "{\"name\":\"A\",\"age\":1,\"tags\":[],\"status\":null,\"home\":{\"city\":\"L\"},\"note\":null}", // too few
            "{\"name\":\"A\",\"age\":1,\"tags\":[\"1\",\"2\",\"3\",\"4\"],\"status\":null,\"home\":{\"city\":\"L\"},\"note\":null}",
        }) {
            assertFalse(completes(schema, bad), bad);
        }
    }

    @Test
    void whatCannotBeEnforcedIsRefusedNamingIt() {
        Map<String, String> refused = Map.of(
                "{\"type\":\"object\",\"properties\":{\"a\":{\"anyOf\":[{\"type\":\"string\"},{\"enum\":[\"x\"]}]}}}", "anyOf",
                "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"pattern\":\"x+\"}}}", "pattern",
                "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"format\":\"hostname\"}}}", "hostname",
                "{\"type\":\"object\",\"required\":[\"b\"],\"properties\":{\"a\":{}}}", "'b'",
                "{\"type\":\"object\",\"properties\":{\"a\":{\"enum\":[{\"x\":1}]}}}", "enum",
                "{\"type\":\"array\",\"items\":{}}", "top level",
                "{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"http://x/y\"}}}", "$ref",
                "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}}", "additionalProperties",
                "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}}}", "minItems");
        refused.forEach((schema, named) -> {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> JsonSchema.compile(JsonParser.parseString(schema).getAsJsonObject()), schema);
            assertTrue(e.getMessage().contains(named), e.getMessage());
        });
    }

    /** Pydantic's Optional[X]: anyOf X or null, X an integer or a reference to an enum. */
    @Test
    void alternativesThatTheFirstCharacterTellsApartAreFollowed() {
        JsonSchema optional = JsonSchema.compile(JsonParser.parseString("""
                {"type": "object", "properties": {"n": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": null},
                  "e": {"anyOf": [{"$ref": "#/$defs/Color"}, {"type": "null"}]}},
                 "$defs": {"Color": {"enum": ["red", "blue"], "type": "string", "title": "Color"}}}""").getAsJsonObject());
        assertTrue(completes(optional, "{\"n\":3,\"e\":\"red\"}"));
        assertTrue(completes(optional, "{\"n\":null,\"e\":null}"));
        assertTrue(completes(optional, "{}"));
        assertFalse(completes(optional, "{\"n\":\"3\"}"));
        assertFalse(completes(optional, "{\"n\":1.5}"));
        assertFalse(completes(optional, "{\"e\":\"green\"}"));
        assertFalse(completes(optional, "{\"e\":true}"));
    }

    @Test
    void aSchemaNestedDeeperThanAnAnswerMayBeIsRefused() {
        String deep = "{\"type\":\"object\",\"properties\":{\"a\":".repeat(100) + "{}" + "}}".repeat(100);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> JsonSchema.compile(JsonParser.parseString(deep).getAsJsonObject()));
        assertTrue(e.getMessage().contains("nested deeper"), e.getMessage());
    }

    @Test
    void stringFormatsAreFollowed() {
        JsonSchema formats = JsonSchema.compile(JsonParser.parseString("""
                {"type": "object", "properties": {"d": {"type": "string", "format": "date"},
                  "t": {"type": "string", "format": "date-time"}, "u": {"type": "string", "format": "uuid"},
                  "h": {"type": "string", "format": "time"}}}""").getAsJsonObject());
        for (String ok : new String[] {
            "{\"d\":\"2026-11-24\",\"t\":\"2026-11-24T10:30:00Z\",\"u\":\"123e4567-e89b-12d3-a456-426614174000\",\"h\":\"10:30:00.5+01:00\"}",
            "{\"t\":\"2026-11-24t10:30:00\",\"h\":\"23:59:59.123456-05:00\"}",
        }) {
            assertTrue(completes(formats, ok), ok);
        }
        for (String bad : new String[] {"{\"d\":\"2026-11-2\"}", "{\"d\":\"2026/11/24\"}", "{\"t\":\"2026-11-24 10:30\"}",
            "{\"u\":\"123e4567\"}", "{\"h\":\"10:30:00+0100\"}", "{\"d\":\"2026-11-24x\"}", "{\"d\":\"\\u0032026-11-24\"}",
            "{\"h\":\"10:30:00.\"}"}) {
            assertFalse(completes(formats, bad), bad);
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> JsonSchema.compile(JsonParser.parseString(
                "{\"type\":\"object\",\"properties\":{\"m\":{\"type\":\"string\",\"format\":\"email\"}}}").getAsJsonObject()));
        assertTrue(e.getMessage().contains("email"), e.getMessage());
    }

    @Test
    void aKeywordOfTheWrongJsonTypeIsBadInputNotAFault() {
        for (String malformed : new String[] {"{\"properties\":1}", "{\"type\":{}}", "{\"properties\":{},\"required\":\"a\"}",
            "{\"type\":\"object\",\"properties\":{\"a\":{\"enum\":1}}}", "{\"$ref\":[]}", "{\"anyOf\":{}}",
            "{\"type\":\"object\",\"properties\":{\"a\":{\"format\":[]}}}"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> JsonSchema.compile(JsonParser.parseString(malformed).getAsJsonObject()), malformed);
            assertTrue(e.getMessage().contains("not well formed") || e.getMessage().contains("top level"), e.getMessage());
        }
    }

    /** A schema that is "any value" at the top compiles without changing what "any value" means elsewhere. */
    @Test
    void compilingAnAnyOfOfTrueLeavesAnyValueAsItWas() {
        assertTrue(completes(JsonSchema.compile(JsonParser.parseString("{\"anyOf\":[true]}").getAsJsonObject()), "{\"a\":1}"));
        assertTrue(completes(JsonSchema.compile(JsonParser.parseString("{\"type\":\"object\"}").getAsJsonObject()),
                "{\"a\":\"x\",\"b\":[1,null]}"));
    }

    @Test
    void aRecursiveDefinitionIsFollowed() {
        JsonSchema tree = JsonSchema.compile(JsonParser.parseString("""
                {"$ref": "#/$defs/node", "$defs": {"node": {"type": "object", "additionalProperties": false,
                  "required": ["v"], "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}}"""
        ).getAsJsonObject());
        assertTrue(completes(tree, "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[]}]}"));
        assertFalse(completes(tree, "{\"v\":1,\"kids\":[{\"v\":\"2\"}]}"));
    }

    // Decoding under the constraint with random logits: every answer that ends follows the schema, and no point is
    // reached from which nothing but the fallback could follow.

    private static final int EOS = 0;
    /** Pieces as a BPE vocabulary has them, after every printable ASCII character alone (as byte-level ones do). */
    private static final String[] VOCAB;

    static {
        List<String> vocab = new ArrayList<>(List.of("<eos>", "\n", "null", "true", "\"name\"", "\"age\":", "\"tags\":[",
                "\"status\":", "\"home\":{", "\"city\":\"", "\"note\":", "\"zip\":", "\"active\"", "\"retired\"", "act", "ive",
                "ret", "ired\"", "\"extra\":", "\",", "\"}", "],", "12", "x y", "na", "me", "\":", "\"n", "ote", "ci", "ty", "\\\""));
        for (char c = ' '; c < 127; c++) vocab.add(String.valueOf(c));
        VOCAB = vocab.toArray(String[]::new);
    }
    private static final TestVocabulary TOKENIZER = new TestVocabulary(VOCAB, Set.of(EOS));

    @Test
    void randomDecodingUnderTheSchemaEndsInObjectsThatFollowIt() {
        JsonObject schemaJson = JsonParser.parseString(PERSON).getAsJsonObject();
        JsonSchema compiled = GrammarConstraint.compileSchema(schemaJson);
        SplittableRandom random = new SplittableRandom(17);
        int ended = 0;
        Set<String> distinct = new HashSet<>();
        for (int round = 0; round < 300; round++) {
            GrammarConstraint constraint = GrammarConstraint.jsonSchema(TOKENIZER, -1, compiled);
            List<Integer> output = new ArrayList<>();
            int token = -1;
            for (int step = 0; step < 400 && token != EOS; step++) {
                float[] logits = new float[VOCAB.length];
                for (int i = 0; i < logits.length; i++) logits[i] = (float) random.nextGaussian() * 2;
                logits[EOS] += 4;
                constraint.process(logits, new TestVocabulary.View(output, EOS));
                String sofar = text(output);
                int allowed = 0;
                for (int i = 1; i < logits.length; i++) if (logits[i] != Float.NEGATIVE_INFINITY) allowed++;
                boolean canEnd = logits[EOS] != Float.NEGATIVE_INFINITY;
                boolean complete = completes(compiled, sofar);
                assertEquals(complete, canEnd, "the end allowed exactly when complete, after " + sofar);
                assertTrue(complete || allowed > 0, "a dead end after " + sofar);
                if (round < 40) { // the (kept) masks against reading every token from the text
                    for (int id = 1; id < VOCAB.length; id++) {
                        SchemaPrefix p = new SchemaPrefix(compiled);
                        boolean fits = !complete && p.accept((sofar + VOCAB[id]).getBytes(StandardCharsets.UTF_8));
                        String piece = VOCAB[id];
                        assertEquals(fits, logits[id] != Float.NEGATIVE_INFINITY, () -> "'" + piece + "' after " + sofar);
                    }
                }
                int best = 0;
                for (int i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
                token = best;
                output.add(token);
            }
            String text = text(output);
            if (token == EOS) {
                ended++;
                distinct.add(text);
                assertTrue(completes(compiled, text), "the recognizer does not complete: " + text + " tokens " + output);
                assertTrue(valid(JsonParser.parseString(text), schemaJson), "does not follow the schema: " + text);
                assertTrue(completes(compiled, text), text);
            }
        }
        assertTrue(ended > 100, "few answers ended: " + ended);
        assertTrue(distinct.size() > 20, "the answers hardly differ: " + distinct.size());
    }

    private static String text(List<Integer> output) {
        return TOKENIZER.text(output);
    }

    /** A validator of the supported subset, written from the JSON Schema specification, for checking answers. */
    private static boolean valid(JsonElement value, JsonObject schema) {
        return valid(value, schema, schema);
    }

    private static boolean valid(JsonElement value, JsonObject schema, JsonObject root) {
        if (schema.has("$ref")) {
            String[] parts = schema.get("$ref").getAsString().split("/");
            return valid(value, root.getAsJsonObject(parts[1]).getAsJsonObject(parts[2]), root);
        }
        if (schema.has("anyOf")) {
            for (JsonElement alternative : schema.getAsJsonArray("anyOf")) if (valid(value, alternative.getAsJsonObject(), root)) return true;
            return false;
        }
        if (schema.has("type")) {
            List<String> types = new ArrayList<>();
            if (schema.get("type").isJsonArray()) schema.getAsJsonArray("type").forEach(t -> types.add(t.getAsString()));
            else types.add(schema.get("type").getAsString());
            boolean any = false;
            for (String t : types) any |= switch (t) {
                case "object" -> value.isJsonObject();
                case "array" -> value.isJsonArray();
                case "string" -> value.isJsonPrimitive() && value.getAsJsonPrimitive().isString();
                case "number" -> value.isJsonPrimitive() && value.getAsJsonPrimitive().isNumber();
                case "integer" -> value.isJsonPrimitive() && value.getAsJsonPrimitive().isNumber()
                        && new java.math.BigDecimal(value.getAsString()).stripTrailingZeros().scale() <= 0
                        && !value.getAsString().contains(".") && !value.getAsString().toLowerCase().contains("e");
                case "boolean" -> value.isJsonPrimitive() && value.getAsJsonPrimitive().isBoolean();
                case "null" -> value.isJsonNull();
                default -> false;
            };
            if (!any) return false;
        }
        if (schema.has("format") && schema.get("format").getAsString().equals("date")
                && !value.getAsString().matches("[0-9]{4}-[0-9]{2}-[0-9]{2}")) {
            return false;
        }
        if (schema.has("enum")) {
            boolean found = false;
            for (JsonElement e : schema.getAsJsonArray("enum")) found |= sameJson(e, value);
            if (!found) return false;
        }
        if (value.isJsonObject() && schema.has("properties")) {
            JsonObject o = value.getAsJsonObject();
            JsonObject properties = schema.getAsJsonObject("properties");
            if (schema.has("required")) for (JsonElement r : schema.getAsJsonArray("required")) if (!o.has(r.getAsString())) return false;
            for (var e : o.entrySet()) {
                if (properties.has(e.getKey())) {
                    if (!valid(e.getValue(), properties.getAsJsonObject(e.getKey()), root)) return false;
                } else if (schema.has("additionalProperties") && !schema.get("additionalProperties").getAsBoolean()) {
                    return false;
                }
            }
        }
        if (value.isJsonArray() && schema.has("items")) {
            for (JsonElement item : value.getAsJsonArray()) if (!valid(item, schema.getAsJsonObject("items"), root)) return false;
        }
        if (value.isJsonArray() && schema.has("minItems") && value.getAsJsonArray().size() < schema.get("minItems").getAsInt()) return false;
        if (value.isJsonArray() && schema.has("maxItems") && value.getAsJsonArray().size() > schema.get("maxItems").getAsInt()) return false;
        return true;
    }

    private static boolean sameJson(JsonElement a, JsonElement b) {
        if (a.isJsonPrimitive() && b.isJsonPrimitive() && a.getAsJsonPrimitive().isNumber() && b.getAsJsonPrimitive().isNumber()) {
            return new java.math.BigDecimal(a.getAsString()).compareTo(new java.math.BigDecimal(b.getAsString())) == 0;
        }
        return a.equals(b) || a.isJsonNull() && b.isJsonNull() || a instanceof JsonPrimitive p && p.equals(b);
    }

    @Test
    void theSameSchemaTextCompilesOnce() {
        JsonObject schema = JsonParser.parseString(PERSON).getAsJsonObject();
        assertEquals(GrammarConstraint.compileSchema(schema), GrammarConstraint.compileSchema(schema.deepCopy()));
    }
}
