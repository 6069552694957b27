package dev.kiln.server.structured;

import java.util.ArrayList;
import java.util.List;

/**
 * A recognizer of JSON objects that follow a {@link JsonSchema}: {@link JsonPrefix} reads the syntax, and this
 * follows its transitions to hold each value to its schema. A value's first byte must be of a type the schema allows
 * (an integer takes no fraction or exponent); a key must be one of the object's properties not yet given, or any
 * other key where the schema allows others; an object closes only once its required properties are given, and takes
 * no further comma once no property is left to give; an array closes only with its least items and takes no comma
 * once at its most; a value with an {@code enum} or {@code const} must spell one of its texts exactly, as compact
 * JSON writes it; a string with a {@code format} must have it ({@link StringFormat}).
 *
 * <p>Every refusal happens at the first byte that leads nowhere, so that a constrained model never reaches a point
 * from which no text could be completed.
 */
final class SchemaPrefix implements Recognizer {
    private static final int LEVELS = JsonPrefix.MAX_DEPTH + 1;

    private final JsonSchema root;
    private final JsonPrefix json = new JsonPrefix();
    /** Per open container (index depth - 1): its schema, whether it is an object, and its progress. */
    private final JsonSchema[] frame = new JsonSchema[LEVELS];
    private final boolean[] object = new boolean[LEVELS];
    private final long[] given = new long[LEVELS];
    /** An array's items so far. */
    private final int[] items = new int[LEVELS];
    /** The property whose value is being read (-1: another key's), and while a key is read, the names it may still be. */
    private final int[] property = new int[LEVELS];
    private final long[] candidates = new long[LEVELS];
    private final int[] keyLength = new int[LEVELS];
    /** The scalar being read: the texts it must be one of (null: any), which still fit, how much was read. */
    private byte[][] texts;
    private long textCandidates;
    private int textLength;
    private boolean integerOnly;
    /** The string being read: the format its text must have (null: any) and the format's state. */
    private StringFormat format;
    private long formatState;

    SchemaPrefix(JsonSchema root) {
        this.root = root;
    }

    @Override
    public boolean accept(byte b) {
        int m0 = json.mode();
        int d0 = json.depth();
        boolean inKey = json.inKey();
        if (!json.accept(b)) return false;
        int m1 = json.mode();
        if (m0 == JsonPrefix.STRING) {
            if (inKey) return m1 == JsonPrefix.COLON ? keyEnd(d0 - 1) : keyByte(d0 - 1, b);
            if (!textByte(b)) return false;
            if (format != null) {
                if (m1 != JsonPrefix.STRING) {
                    if (!format.accepts(formatState)) return false;
                    format = null;
                } else {
                    formatState = b == '\\' ? 0 : format.step(formatState, b); // a formatted text needs no escapes
                    if (formatState == 0) return false;
                }
            }
            return m1 == JsonPrefix.STRING || textEnd();
        }
        if (m0 == JsonPrefix.LITERAL) {
            if (!textByte(b)) return false;
            return m1 == JsonPrefix.LITERAL || textEnd();
        }
        if (m0 == JsonPrefix.NUMBER) {
            if (m1 == JsonPrefix.NUMBER) return !(integerOnly && (b == '.' || b == 'e' || b == 'E')) && textByte(b);
            // The number ended before this byte, which then did what it does after a value.
            return textEnd() && structural(b, JsonPrefix.COMMA_OR_END, d0);
        }
        return structural(b, m0, d0);
    }

    /** A byte read between tokens, in mode {@code m0} at depth {@code d0} (before it). */
    private boolean structural(byte b, int m0, int d0) {
        if (b == ' ' || b == '\t' || b == '\n' || b == '\r') return true;
        int level = d0 - 1;
        switch (m0) {
            case JsonPrefix.START:
                return startValue(b, root, 0);
            case JsonPrefix.VALUE:
            case JsonPrefix.VALUE_OR_ARRAY_END:
                JsonSchema parent = frame[level];
                if (b == ']') return items[level] >= parent.minItems;
                if (!object[level] && ++items[level] > parent.maxItems) return false;
                JsonSchema expected = object[level] ? (property[level] >= 0 ? parent.values[property[level]] : JsonSchema.ANY) : parent.items;
                return startValue(b, expected, d0);
            case JsonPrefix.KEY_OR_OBJECT_END:
            case JsonPrefix.KEY:
            case JsonPrefix.COMMA_OR_END:
                if (b == '"') { // a key begins
                    JsonSchema f = frame[level];
                    candidates[level] = JsonSchema.firstBits(f.names.length);
                    keyLength[level] = 0;
                    return f.additional || (candidates[level] & ~given[level]) != 0;
                }
                if (b == '}') return (frame[level].required & ~given[level]) == 0;
                if (b == ',' && object[level]) {
                    JsonSchema f = frame[level];
                    return f.additional || (JsonSchema.firstBits(f.names.length) & ~given[level]) != 0;
                }
                if (b == ',') return items[level] < frame[level].maxItems; // another item must fit
                return items[level] >= frame[level].minItems; // ']'
            default:
                return true; // ':'
        }
    }

    /** The first byte of a value whose schema is {@code expected}, at depth {@code d0} (before it). */
    private boolean startValue(byte b, JsonSchema expected, int d0) {
        int type = switch (b) {
            case '{' -> JsonSchema.OBJECT;
            case '[' -> JsonSchema.ARRAY;
            case '"' -> JsonSchema.STRING;
            case 't', 'f' -> JsonSchema.BOOLEAN;
            case 'n' -> JsonSchema.NULL;
            default -> JsonSchema.NUMBER;
        };
        expected = expected.forType(type);
        if (expected == null) return false;
        boolean allowed = type == JsonSchema.NUMBER ? (expected.types & (JsonSchema.NUMBER | JsonSchema.INTEGER)) != 0
                : (expected.types & type) != 0;
        if (!allowed) return false;
        integerOnly = type == JsonSchema.NUMBER && (expected.types & JsonSchema.NUMBER) == 0;
        format = type == JsonSchema.STRING ? expected.format : null;
        formatState = StringFormat.START;
        texts = expected.allowedTexts;
        textLength = 0;
        if (texts != null) {
            textCandidates = JsonSchema.firstBits(texts.length);
            if (!textByte(b)) return false;
        }
        if (type == JsonSchema.OBJECT || type == JsonSchema.ARRAY) {
            frame[d0] = expected;
            object[d0] = type == JsonSchema.OBJECT;
            given[d0] = 0;
            property[d0] = -1;
            items[d0] = 0;
        }
        return true;
    }

    private boolean keyByte(int level, byte b) {
        JsonSchema f = frame[level];
        int at = keyLength[level]++;
        long kept = 0;
        for (long c = candidates[level]; c != 0; c &= c - 1) {
            int i = Long.numberOfTrailingZeros(c);
            if (f.names[i].length > at && f.names[i][at] == b) kept |= 1L << i;
        }
        candidates[level] = kept;
        // A name already given leads only to a duplicate: without other keys allowed, the key must be a new name.
        return f.additional || (kept & ~given[level]) != 0;
    }

    private boolean keyEnd(int level) {
        JsonSchema f = frame[level];
        for (long c = candidates[level]; c != 0; c &= c - 1) {
            int i = Long.numberOfTrailingZeros(c);
            if (f.names[i].length == keyLength[level]) {
                if ((given[level] >>> i & 1) != 0) return false; // given before
                given[level] |= 1L << i;
                property[level] = i;
                return true;
            }
        }
        property[level] = -1;
        return f.additional;
    }

    /** One more byte of a scalar with allowed texts: some text must go on with it. */
    private boolean textByte(byte b) {
        if (texts == null) return true;
        long kept = 0;
        for (long c = textCandidates; c != 0; c &= c - 1) {
            int i = Long.numberOfTrailingZeros(c);
            if (texts[i].length > textLength && texts[i][textLength] == b) kept |= 1L << i;
        }
        textCandidates = kept;
        textLength++;
        return kept != 0;
    }

    /** The scalar ended: with allowed texts, it must be one of them whole. */
    private boolean textEnd() {
        if (texts == null) return true;
        for (long c = textCandidates; c != 0; c &= c - 1) {
            if (texts[Long.numberOfTrailingZeros(c)].length == textLength) {
                texts = null;
                return true;
            }
        }
        return false;
    }

    @Override
    public boolean complete() {
        return json.complete();
    }

    @Override
    public boolean inPlainString() {
        return json.inPlainString() && !json.inKey() && texts == null && format == null;
    }

    @Override
    public void copyFrom(Recognizer other) {
        SchemaPrefix o = (SchemaPrefix) other;
        json.copyFrom(o.json);
        int levels = Math.min(LEVELS, o.json.depth() + 1);
        System.arraycopy(o.frame, 0, frame, 0, levels);
        System.arraycopy(o.object, 0, object, 0, levels);
        System.arraycopy(o.given, 0, given, 0, levels);
        System.arraycopy(o.property, 0, property, 0, levels);
        System.arraycopy(o.candidates, 0, candidates, 0, levels);
        System.arraycopy(o.keyLength, 0, keyLength, 0, levels);
        System.arraycopy(o.items, 0, items, 0, levels);
        texts = o.texts;
        textCandidates = o.textCandidates;
        textLength = o.textLength;
        integerOnly = o.integerOnly;
        format = o.format;
        formatState = o.formatState;
    }

    @Override
    public SchemaPrefix copy() {
        SchemaPrefix c = new SchemaPrefix(root);
        c.copyFrom(this);
        return c;
    }

    @Override
    public Object stateKey() {
        List<Object> key = new ArrayList<>();
        key.add(json.stateKey());
        int keyLevel = json.inKey() ? json.depth() - 1 : -1; // where a key is being read, its progress counts
        for (int level = 0; level < json.depth(); level++) {
            boolean counted = !object[level] && (frame[level].minItems > 0 || frame[level].maxItems < Integer.MAX_VALUE);
            key.add(new Level(frame[level], object[level], given[level], object[level] ? property[level] : counted ? items[level] : 0,
                    level == keyLevel ? candidates[level] : 0, level == keyLevel ? keyLength[level] : 0));
        }
        if (texts != null) key.add(new Scalar(texts, textCandidates, textLength));
        if (json.mode() == JsonPrefix.NUMBER) key.add(integerOnly);
        if (format != null && json.mode() == JsonPrefix.STRING) key.add(new FormatState(format, formatState));
        return key;
    }

    // Records compare schemas, formats and texts by identity (none of those classes defines equals): a compiled
    // schema is one graph, shared by the requests that use it.
    private record Level(JsonSchema schema, boolean object, long given, int property, long candidates, int keyLength) {}

    private record FormatState(StringFormat format, long state) {}

    private record Scalar(byte[][] texts, long candidates, int length) {}

    @Override
    public Object grammar() {
        return root;
    }
}
