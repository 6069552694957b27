package dev.kiln.server.structured;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A JSON schema compiled for {@link SchemaPrefix}: for each value, the types it may take, an object's properties
 * (which are required, whether others are allowed), an array's items, and the texts an {@code enum} or {@code const}
 * allows. The subset is the one OpenAI's structured outputs use: {@code type} (one or a list), {@code properties},
 * {@code required}, {@code additionalProperties} (true or false), {@code items} with {@code minItems} and
 * {@code maxItems}, {@code enum} and {@code const} of
 * strings, numbers, booleans and null, the string {@code format}s date, time, date-time and uuid ({@link StringFormat}),
 * {@code anyOf} and {@code oneOf} whose alternatives a value's first character
 * tells apart (an optional field's X-or-null), {@code $ref} into {@code $defs} or {@code definitions}; annotations
 * ({@code title}, {@code description}, ...) are ignored. Any other keyword is refused, naming it: a constraint that
 * is not enforced must not look as if it were.
 *
 * <p>Outside this package a compiled schema is only handed on, to {@link GrammarConstraint#jsonSchema}.
 */
public final class JsonSchema {
    static final int OBJECT = 1, ARRAY = 2, STRING = 4, NUMBER = 8, INTEGER = 16, BOOLEAN = 32, NULL = 64, ANY_TYPE = 127;
    /** The most properties an object's schema, or values an enum, may list (a bit each in the recognizer's state). */
    static final int MAX_PROPERTIES = 64;
    private static final Set<String> ANNOTATIONS = Set.of("title", "description", "default", "examples", "$schema", "$id",
            "$comment", "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "strict");
    private static final Gson COMPACT = new GsonBuilder().disableHtmlEscaping().create();

    /** Any JSON value. */
    static final JsonSchema ANY = new JsonSchema();

    static {
        ANY.types = ANY_TYPE;
        ANY.additional = true;
        ANY.items = ANY;
    }

    int types;
    /** Property names as they are written between quotes in JSON, and their schemas. */
    byte[][] names = new byte[0][];
    JsonSchema[] values = new JsonSchema[0];
    long required;
    boolean additional = true;
    JsonSchema items = ANY;
    /** An array's least and most items. */
    int minItems;
    int maxItems = Integer.MAX_VALUE;
    /** The compact JSON texts the value must be one of, or null for no such limit. */
    byte[][] allowedTexts;
    /**
     * An {@code anyOf} (or {@code oneOf}): the alternatives, of which a value's first byte picks one (their kinds of
     * value do not overlap); null for a plain schema.
     */
    JsonSchema[] alternatives;
    /** The {@code format} a string's text must have, or null. */
    StringFormat format;

    private JsonSchema() {}

    /** Recently compiled schemas by their text: requests with one schema share its compiled form and its masks. */
    private static final Map<String, JsonSchema> SHARED = new java.util.LinkedHashMap<>(16, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<String, JsonSchema> eldest) {
            return size() > 64;
        }
    };

    /** {@link #compile}, or the schema compiled before from the same text. */
    static JsonSchema compileShared(JsonObject schema) {
        String text = schema.toString();
        synchronized (SHARED) {
            JsonSchema known = SHARED.get(text);
            if (known != null) return known;
        }
        JsonSchema compiled = compile(schema);
        synchronized (SHARED) {
            SHARED.putIfAbsent(text, compiled);
            return SHARED.get(text);
        }
    }

    /**
     * Compiles a schema whose top level is an object.
     *
     * @throws IllegalArgumentException naming what is not supported or not valid
     */
    static JsonSchema compile(JsonObject schema) {
        JsonSchema root;
        try {
            root = new Compiler(schema).compile(schema, "#");
        } catch (ClassCastException | IllegalStateException | UnsupportedOperationException e) {
            // Gson's answer to a keyword of the wrong JSON type ("properties": 1, "type": {}): bad input, not a fault.
            throw new IllegalArgumentException("the schema is not well formed: a keyword has a value of the wrong JSON type ("
                    + e.getMessage() + ")", e);
        }
        // The answer is one object (JsonPrefix reads no other top level), so the root need only allow objects.
        if ((root.types & OBJECT) == 0 || root.allowedTexts != null || root.alternatives != null) {
            throw new IllegalArgumentException("the schema's top level must be an object");
        }
        return root;
    }

    /** The first {@code n} bits (n at most 64): one for each property, or each allowed text. */
    static long firstBits(int n) {
        return n == 64 ? -1L : (1L << n) - 1;
    }

    /** For a value of the given type (NUMBER for any number), the schema it follows: this, or the alternative of it. */
    JsonSchema forType(int type) {
        if (alternatives == null) return this;
        for (JsonSchema a : alternatives) if ((kinds(a) & kind(type)) != 0) return a;
        return null;
    }

    /** Types as kinds of first byte: integers and numbers begin alike. */
    private static int kind(int types) {
        return (types & (NUMBER | INTEGER)) != 0 ? types & ~INTEGER | NUMBER : types;
    }

    /** The kinds of value a schema can begin: its types, narrowed by its allowed texts. */
    private static int kinds(JsonSchema s) {
        if (s.alternatives != null) {
            int k = 0;
            for (JsonSchema a : s.alternatives) k |= kinds(a);
            return k;
        }
        if (s.allowedTexts == null) return kind(s.types);
        int k = 0;
        for (byte[] text : s.allowedTexts) {
            k |= switch (text[0]) {
                case '"' -> STRING;
                case 't', 'f' -> BOOLEAN;
                case 'n' -> NULL;
                default -> NUMBER;
            };
        }
        return k;
    }

    private static final class Compiler {
        private final JsonObject root;
        private final Map<String, JsonSchema> references = new HashMap<>();
        private int depth;

        Compiler(JsonObject root) {
            this.root = root;
        }

        JsonSchema compile(JsonElement element, String where) {
            // A schema nested deeper than any answer may be (JsonPrefix.MAX_DEPTH) could only exhaust the stack.
            if (++depth > JsonPrefix.MAX_DEPTH) {
                throw new IllegalArgumentException("the schema is nested deeper than " + JsonPrefix.MAX_DEPTH + " levels (at " + where + ")");
            }
            try {
                return compileNested(element, where);
            } finally {
                depth--;
            }
        }

        private JsonSchema compileNested(JsonElement element, String where) {
            if (element.isJsonPrimitive() && element.getAsJsonPrimitive().isBoolean()) {
                if (element.getAsBoolean()) return ANY;
                throw new IllegalArgumentException("the schema at " + where + " is false: nothing could match it");
            }
            if (!element.isJsonObject()) throw new IllegalArgumentException("the schema at " + where + " is not an object");
            JsonObject o = element.getAsJsonObject();
            if (o.has("$ref")) {
                if (o.size() > 1 && o.keySet().stream().anyMatch(k -> !k.equals("$ref") && !ANNOTATIONS.contains(k))) {
                    throw new IllegalArgumentException("'$ref' beside other keywords at " + where + " is not supported");
                }
                return reference(o.get("$ref").getAsString());
            }
            for (String union : List.of("anyOf", "oneOf")) {
                if (!o.has(union)) continue;
                if (o.keySet().stream().anyMatch(k -> !k.equals(union) && !ANNOTATIONS.contains(k))) {
                    throw new IllegalArgumentException("'" + union + "' beside other keywords at " + where + " is not supported");
                }
                return union(o.getAsJsonArray(union), where + "/" + union);
            }
            JsonSchema s = new JsonSchema();
            for (String keyword : o.keySet()) {
                if (!ANNOTATIONS.contains(keyword) && !Set.of("type", "properties", "required", "additionalProperties", "items",
                        "enum", "const", "minItems", "maxItems", "format").contains(keyword)) {
                    throw new IllegalArgumentException("the JSON schema keyword '" + keyword + "' (at " + where + ") is not supported");
                }
            }
            s.types = o.has("type") ? types(o.get("type"), where) : implied(o);
            if (o.has("properties")) {
                JsonObject properties = o.getAsJsonObject("properties");
                if (properties.size() > MAX_PROPERTIES) {
                    throw new IllegalArgumentException("an object schema may list at most " + MAX_PROPERTIES + " properties (at " + where + ")");
                }
                List<byte[]> names = new ArrayList<>();
                List<JsonSchema> values = new ArrayList<>();
                for (var p : properties.entrySet()) {
                    String quoted = COMPACT.toJson(p.getKey());
                    names.add(quoted.substring(1, quoted.length() - 1).getBytes(StandardCharsets.UTF_8));
                    values.add(compile(p.getValue(), where + "/properties/" + p.getKey()));
                }
                s.names = names.toArray(byte[][]::new);
                s.values = values.toArray(JsonSchema[]::new);
            }
            if (o.has("required")) {
                for (JsonElement name : o.getAsJsonArray("required")) {
                    int i = indexOf(o, name.getAsString());
                    if (i < 0) {
                        throw new IllegalArgumentException("required property '" + name.getAsString() + "' is not among the properties (at " + where + ")");
                    }
                    s.required |= 1L << i;
                }
            }
            if (o.has("additionalProperties")) {
                JsonElement a = o.get("additionalProperties");
                if (a.isJsonPrimitive() && a.getAsJsonPrimitive().isBoolean()) s.additional = a.getAsBoolean();
                else if (a.isJsonObject() && a.getAsJsonObject().isEmpty()) s.additional = true;
                else throw new IllegalArgumentException("'additionalProperties' other than true or false (at " + where + ") is not supported");
            }
            if (o.has("format")) {
                String name = o.get("format").getAsString();
                s.format = StringFormat.KNOWN.get(name);
                if (s.format == null) {
                    throw new IllegalArgumentException("the string format '" + name + "' (at " + where + ") is not supported; "
                            + "date, time, date-time and uuid are");
                }
            }
            if (o.has("items")) s.items = compile(o.get("items"), where + "/items");
            if (o.has("minItems")) s.minItems = count(o, "minItems", where);
            if (o.has("maxItems")) s.maxItems = count(o, "maxItems", where);
            if (s.minItems > s.maxItems) {
                throw new IllegalArgumentException("'minItems' exceeds 'maxItems' (at " + where + "): nothing could match");
            }
            if (o.has("enum") || o.has("const")) {
                JsonArray allowed = o.has("enum") ? o.getAsJsonArray("enum") : new JsonArray();
                if (o.has("const")) allowed.add(o.get("const"));
                List<byte[]> texts = new ArrayList<>();
                for (JsonElement v : allowed) {
                    if (!v.isJsonPrimitive() && !v.isJsonNull()) {
                        throw new IllegalArgumentException("'enum' and 'const' of objects or arrays (at " + where + ") are not supported");
                    }
                    texts.add(COMPACT.toJson(v).getBytes(StandardCharsets.UTF_8));
                }
                if (texts.isEmpty()) throw new IllegalArgumentException("an empty 'enum' (at " + where + ") allows nothing");
                if (texts.size() > MAX_PROPERTIES) {
                    throw new IllegalArgumentException("an 'enum' may list at most " + MAX_PROPERTIES + " values (at " + where + ")");
                }
                s.allowedTexts = texts.toArray(byte[][]::new);
            }
            return s;
        }

        /**
         * Alternatives that begin with different kinds of value (Pydantic's {@code Optional[X]} is {@code X} or null),
         * so that a value's first byte decides which one it follows; overlapping ones are refused.
         */
        private JsonSchema union(JsonArray options, String where) {
            List<JsonSchema> alternatives = new ArrayList<>();
            int seen = 0;
            for (int i = 0; i < options.size(); i++) {
                JsonSchema a = compile(options.get(i), where + "/" + i);
                int k = kinds(a);
                if (k == 0) throw new IllegalArgumentException("a recursive alternative (at " + where + "/" + i + ") is not supported");
                if ((k & seen) != 0) {
                    throw new IllegalArgumentException("alternatives (at " + where + ") that can begin with the same kind of value "
                            + "are not supported: only ones a value's first character tells apart, such as a type or null");
                }
                seen |= k;
                alternatives.add(a);
            }
            if (alternatives.isEmpty()) throw new IllegalArgumentException("no alternative (at " + where + ")");
            if (alternatives.size() == 1) return alternatives.getFirst();
            JsonSchema u = new JsonSchema();
            u.alternatives = alternatives.toArray(JsonSchema[]::new);
            u.types = 0;
            for (JsonSchema a : u.alternatives) u.types |= a.types;
            return u;
        }

        private static int count(JsonObject o, String keyword, String where) {
            JsonElement e = o.get(keyword);
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber() || e.getAsDouble() < 0 || e.getAsDouble() != Math.floor(e.getAsDouble())) {
                throw new IllegalArgumentException("'" + keyword + "' must be a whole number (at " + where + ")");
            }
            return (int) Math.min(e.getAsDouble(), Integer.MAX_VALUE);
        }

        private static int indexOf(JsonObject o, String name) {
            if (!o.has("properties")) return -1;
            int i = 0;
            for (String key : o.getAsJsonObject("properties").keySet()) {
                if (key.equals(name)) return i;
                i++;
            }
            return -1;
        }

        private JsonSchema reference(String ref) {
            JsonSchema known = references.get(ref);
            if (known != null) return known;
            String[] parts = ref.split("/");
            if (parts.length != 3 || !parts[0].equals("#") || !(parts[1].equals("$defs") || parts[1].equals("definitions"))) {
                throw new IllegalArgumentException("'$ref' to '" + ref + "' is not supported: only #/$defs/NAME and #/definitions/NAME are");
            }
            JsonObject defs = root.getAsJsonObject(parts[1]);
            if (defs == null || !defs.has(parts[2])) throw new IllegalArgumentException("'$ref' to '" + ref + "' names no definition");
            // Registered before compiling, so that a recursive schema refers to itself.
            JsonSchema target = new JsonSchema();
            references.put(ref, target);
            JsonSchema compiled = compile(defs.get(parts[2]), ref);
            target.types = compiled.types;
            target.names = compiled.names;
            target.values = compiled.values;
            target.required = compiled.required;
            target.additional = compiled.additional;
            target.items = compiled.items;
            target.minItems = compiled.minItems;
            target.maxItems = compiled.maxItems;
            target.allowedTexts = compiled.allowedTexts;
            target.alternatives = compiled.alternatives;
            target.format = compiled.format;
            return target;
        }

        private static int types(JsonElement type, String where) {
            int types = 0;
            List<JsonElement> names = new ArrayList<>();
            if (type.isJsonArray()) type.getAsJsonArray().forEach(names::add);
            else names.add(type);
            for (JsonElement t : names) {
                types |= switch (t.getAsString()) {
                    case "object" -> OBJECT;
                    case "array" -> ARRAY;
                    case "string" -> STRING;
                    case "number" -> NUMBER;
                    case "integer" -> INTEGER;
                    case "boolean" -> BOOLEAN;
                    case "null" -> NULL;
                    default -> throw new IllegalArgumentException("unknown type '" + t.getAsString() + "' (at " + where + ")");
                };
            }
            return types;
        }

        /** Without {@code type}: what the other keywords imply, else any. */
        private static int implied(JsonObject o) {
            if (o.has("properties") || o.has("required") || o.has("additionalProperties")) return OBJECT;
            if (o.has("items")) return ARRAY;
            return ANY_TYPE;
        }
    }
}
