package dev.kiln.server.structured;

/**
 * A recognizer of JSON text (RFC 8259) whose top-level value is an object, fed one byte at a time: it accepts
 * exactly the byte strings that begin such a text, and tells when the text is complete. Strings may hold any bytes
 * from 0x20 up (UTF-8 is not checked: a byte-level token may carry part of a character).
 *
 * <p>Runs of whitespace between tokens are limited to {@link #MAX_BLANKS} bytes ({@link #MAX_LEADING_BLANKS} before
 * the object), and nesting to {@link #MAX_DEPTH}
 * levels: without a limit a model can keep choosing spaces or brackets and never finish; pretty-printed text stays
 * well inside both.
 *
 * <p>The whole state is two longs ({@link #containers()}, {@link #packed()}; {@link #restore}), so a caller tries one token after another
 * from the same state by restoring it between them.
 */
final class JsonPrefix implements Recognizer {
    static final int MAX_DEPTH = 63;
    static final int MAX_BLANKS = 16;
    /** Before the object: a reasoning model's blank line after its reasoning, no more. */
    static final int MAX_LEADING_BLANKS = 4;

    static final int START = 0, VALUE = 1, VALUE_OR_ARRAY_END = 2, KEY_OR_OBJECT_END = 3, KEY = 4, COLON = 5,
            COMMA_OR_END = 6, STRING = 7, NUMBER = 8, LITERAL = 9, DONE = 10;
    /** Number states: after '-', after a leading '0', in integer digits, after '.', in fraction digits, after 'e', after its sign, in exponent digits. */
    private static final int MINUS = 0, ZERO = 1, INTEGER = 2, DOT = 3, FRACTION = 4, E = 5, E_SIGN = 6, EXPONENT = 7;
    private static final String[] LITERALS = {"true", "false", "null"};

    /** Bit d set: the container at depth d + 1 is an object, clear: an array. */
    private long containers;
    private int mode = START;
    private int depth;
    private int blanks;
    /** STRING: whether it is an object's key. */
    private boolean key;
    /** STRING: 0, 1 after a backslash, 2..5 while hex digits of a {@code \}{@code u} escape remain (one more than left). */
    private int escape;
    /** NUMBER: its state; LITERAL: which literal (high bits) and how much of it was read (low bits). */
    private int sub;

    /** The recognizer's mode (one of the constants above), for a schema that follows its transitions. */
    int mode() {
        return mode;
    }

    int depth() {
        return depth;
    }

    /** Inside a string, whether it is an object's key. */
    boolean inKey() {
        return mode == STRING && key;
    }

    /** Whether a whole JSON object has been read (only whitespace may follow). */
    @Override
    public boolean complete() {
        return mode == DONE;
    }

    /**
     * Whether the text is inside a string and not in an escape: any byte from 0x20 up other than a quote or a
     * backslash is then accepted and changes nothing.
     */
    @Override
    public boolean inPlainString() {
        return mode == STRING && escape == 0;
    }

    /** The container stack, the first half of the state to {@link #restore}. */
    long containers() {
        // Only the bits of open containers: equal states then have equal keys (bits above are left from closed ones).
        return depth == 0 ? 0 : containers & -1L >>> (64 - depth);
    }

    /** The rest of the state. */
    long packed() {
        // The key flag counts only inside a string (it is set again when the next string opens).
        return mode | (long) depth << 8 | (long) blanks << 16 | (mode == STRING && key ? 1L : 0L) << 24 | (long) escape << 32
                | (long) sub << 40;
    }

    void restore(long containers, long packed) {
        this.containers = containers;
        this.mode = (int) (packed & 0xFF);
        this.depth = (int) (packed >>> 8 & 0xFF);
        this.blanks = (int) (packed >>> 16 & 0xFF);
        this.key = (packed >>> 24 & 1) != 0;
        this.escape = (int) (packed >>> 32 & 0xFF);
        this.sub = (int) (packed >>> 40 & 0xFFFF);
    }

    /** Any JSON object: one grammar for every request, so its masks are shared. */
    static final Object GRAMMAR = "json-object";

    @Override
    public void copyFrom(Recognizer other) {
        JsonPrefix o = (JsonPrefix) other;
        restore(o.containers(), o.packed());
    }

    @Override
    public JsonPrefix copy() {
        JsonPrefix c = new JsonPrefix();
        c.copyFrom(this);
        return c;
    }

    @Override
    public Object stateKey() {
        return new State(containers(), packed());
    }

    private record State(long containers, long packed) {}

    @Override
    public Object grammar() {
        return GRAMMAR;
    }

    /** Feeds one byte; false when the text so far plus this byte begins no JSON object. */
    @Override
    public boolean accept(byte b) {
        int c = b & 0xFF;
        switch (mode) {
            case STRING -> {
                return string(c);
            }
            case NUMBER -> {
                return number(c);
            }
            case LITERAL -> {
                String literal = LITERALS[sub >>> 8];
                int read = sub & 0xFF;
                if (c != literal.charAt(read)) return false;
                sub++;
                if (read + 1 == literal.length()) valueDone();
                return true;
            }
            default -> { // DONE (whitespace may follow the object) and the modes between tokens
                if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return ++blanks <= (mode == START ? MAX_LEADING_BLANKS : MAX_BLANKS);
                blanks = 0;
                return mode != DONE && structural(c);
            }
        }
    }

    private boolean structural(int c) {
        switch (mode) {
            case START:
                return c == '{' && open(true);
            case VALUE_OR_ARRAY_END:
                if (c == ']') return close(false);
                return value(c);
            case VALUE:
                return value(c);
            case KEY_OR_OBJECT_END:
                if (c == '}') return close(true);
                return startKey(c);
            case KEY:
                return startKey(c);
            case COLON:
                if (c != ':') return false;
                mode = VALUE;
                return true;
            case COMMA_OR_END:
                boolean inObject = inObject();
                if (c == ',') {
                    mode = inObject ? KEY : VALUE;
                    return true;
                }
                if (c == '}' && inObject) return close(true);
                if (c == ']' && !inObject) return close(false);
                return false;
            default:
                return false;
        }
    }

    private boolean value(int c) {
        switch (c) {
            case '{':
                return open(true);
            case '[':
                return open(false);
            case '"':
                mode = STRING;
                key = false;
                escape = 0;
                return true;
            case '-':
                return startNumber(MINUS);
            case '0':
                return startNumber(ZERO);
            case 't':
                return startLiteral(0);
            case 'f':
                return startLiteral(1);
            case 'n':
                return startLiteral(2);
            default:
                return c >= '1' && c <= '9' && startNumber(INTEGER);
        }
    }

    private boolean startKey(int c) {
        if (c != '"') return false;
        mode = STRING;
        key = true;
        escape = 0;
        return true;
    }

    private boolean startNumber(int state) {
        mode = NUMBER;
        sub = state;
        return true;
    }

    private boolean startLiteral(int which) {
        mode = LITERAL;
        sub = which << 8 | 1;
        return true;
    }

    private boolean open(boolean object) {
        if (depth == MAX_DEPTH) return false;
        if (object) containers |= 1L << depth;
        else containers &= ~(1L << depth);
        depth++;
        mode = object ? KEY_OR_OBJECT_END : VALUE_OR_ARRAY_END;
        return true;
    }

    private boolean close(boolean object) {
        if (depth == 0 || inObject() != object) return false;
        depth--;
        valueDone();
        return true;
    }

    private boolean inObject() {
        return depth > 0 && (containers >>> (depth - 1) & 1) != 0;
    }

    private void valueDone() {
        mode = depth == 0 ? DONE : COMMA_OR_END;
        sub = 0;
    }

    private boolean string(int c) {
        if (escape == 1) {
            if (c == 'u') {
                escape = 5;
                return true;
            }
            escape = 0;
            return c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't';
        }
        if (escape > 1) {
            boolean hex = c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F';
            if (!hex) return false;
            escape = escape == 2 ? 0 : escape - 1;
            return true;
        }
        if (c == '"') {
            if (key) mode = COLON;
            else valueDone();
            return true;
        }
        if (c == '\\') {
            escape = 1;
            return true;
        }
        return c >= 0x20;
    }

    private boolean number(int c) {
        boolean digit = c >= '0' && c <= '9';
        switch (sub) {
            case MINUS:
                if (c == '0') sub = ZERO;
                else if (digit) sub = INTEGER;
                else return false;
                return true;
            case DOT:
                if (!digit) return false;
                sub = FRACTION;
                return true;
            case E:
                if (c == '+' || c == '-') sub = E_SIGN;
                else if (digit) sub = EXPONENT;
                else return false;
                return true;
            case E_SIGN:
                if (!digit) return false;
                sub = EXPONENT;
                return true;
            default: // ZERO, INTEGER, FRACTION, EXPONENT: the number may end here
                if (digit && sub != ZERO) return true;
                if (c == '.' && (sub == ZERO || sub == INTEGER)) {
                    sub = DOT;
                    return true;
                }
                if ((c == 'e' || c == 'E') && sub != EXPONENT) {
                    sub = E;
                    return true;
                }
                valueDone(); // the byte after the number belongs to what follows it
                return accept((byte) c);
        }
    }
}
