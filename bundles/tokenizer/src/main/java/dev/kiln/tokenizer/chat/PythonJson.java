package dev.kiln.tokenizer.chat;

import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Serializes template values the way transformers' {@code tojson} filter does, which is Python's
 * {@code json.dumps(value, ensure_ascii=False, indent=..., sort_keys=...)}: {@code ", "} and {@code ": "} between
 * items on one line, {@code ","} at line ends when indented, non-ASCII characters as they are, floats as Python
 * prints them. Tool schemas rendered into prompts must be byte-identical to what the model was trained on.
 */
final class PythonJson {
    private PythonJson() {}

    /**
     * @param indent    spaces per level, or null for one line
     * @param sortKeys  whether object keys are sorted
     */
    static String dumps(Object value, Integer indent, boolean sortKeys) {
        StringBuilder out = new StringBuilder();
        write(out, value, indent, sortKeys, 0);
        return out.toString();
    }

    private static void write(StringBuilder out, Object value, Integer indent, boolean sortKeys, int depth) {
        switch (value) {
            case null -> out.append("null");
            case Boolean b -> out.append(b ? "true" : "false");
            case CharSequence s -> string(out, s.toString());
            case Character c -> string(out, c.toString());
            case Double d -> out.append(pythonFloat(d));
            case Float f -> out.append(pythonFloat(f.doubleValue()));
            case BigDecimal d -> out.append(pythonFloat(d.doubleValue()));
            case Number n -> out.append(n.toString());
            case Map<?, ?> map -> {
                if (map.isEmpty()) {
                    out.append("{}");
                    return;
                }
                Map<?, ?> entries = sortKeys ? new TreeMap<>(stringKeys(map)) : map;
                out.append('{');
                boolean first = true;
                for (Map.Entry<?, ?> e : entries.entrySet()) {
                    separator(out, first, indent, depth + 1);
                    string(out, key(e.getKey()));
                    out.append(": ");
                    write(out, e.getValue(), indent, sortKeys, depth + 1);
                    first = false;
                }
                close(out, indent, depth);
                out.append('}');
            }
            case Iterable<?> items -> {
                List<Object> list = new ArrayList<>();
                items.forEach(list::add);
                if (list.isEmpty()) {
                    out.append("[]");
                    return;
                }
                out.append('[');
                boolean first = true;
                for (Object item : list) {
                    separator(out, first, indent, depth + 1);
                    write(out, item, indent, sortKeys, depth + 1);
                    first = false;
                }
                close(out, indent, depth);
                out.append(']');
            }
            case Object[] array -> write(out, java.util.Arrays.asList(array), indent, sortKeys, depth);
            default -> string(out, value.toString());
        }
    }

    private static Map<String, Object> stringKeys(Map<?, ?> map) {
        Map<String, Object> copy = new java.util.LinkedHashMap<>();
        map.forEach((k, v) -> copy.put(key(k), v));
        return copy;
    }

    /** Python turns keys that are not strings into strings (True becomes "true", None "null"). */
    private static String key(Object key) {
        if (key == null) {
            return "null";
        }
        if (key instanceof Boolean b) {
            return b ? "true" : "false";
        }
        if (key instanceof Double d) {
            return pythonFloat(d);
        }
        return key.toString();
    }

    private static void separator(StringBuilder out, boolean first, Integer indent, int depth) {
        if (indent == null) {
            if (!first) {
                out.append(", ");
            }
            return;
        }
        if (!first) {
            out.append(',');
        }
        out.append('\n').append(" ".repeat(indent * depth));
    }

    private static void close(StringBuilder out, Integer indent, int depth) {
        if (indent != null) {
            out.append('\n').append(" ".repeat(indent * depth));
        }
    }

    private static void string(StringBuilder out, String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                case '\b' -> out.append("\\b");
                case '\f' -> out.append("\\f");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        out.append('"');
    }

    /** Python's {@code repr(float)}: shortest round-trip digits, positional from 1e-4 up to 1e16, else exponent. */
    static String pythonFloat(double d) {
        if (Double.isNaN(d)) {
            return "NaN";
        }
        if (Double.isInfinite(d)) {
            return d > 0 ? "Infinity" : "-Infinity";
        }
        if (d == 0) {
            return (1 / d < 0) ? "-0.0" : "0.0";
        }
        BigDecimal shortest = new BigDecimal(Double.toString(d)).stripTrailingZeros();
        double magnitude = Math.abs(d);
        if (magnitude >= 1e-4 && magnitude < 1e16) {
            String plain = shortest.toPlainString();
            return plain.contains(".") ? plain : plain + ".0";
        }
        String digits = shortest.unscaledValue().abs().toString();
        int exponent = digits.length() - 1 - shortest.scale();
        String mantissa = digits.length() == 1 ? digits : digits.charAt(0) + "." + digits.substring(1);
        String sign = d < 0 ? "-" : "";
        return sign + mantissa + "e" + (exponent < 0 ? "-" : "+") + String.format("%02d", Math.abs(exponent));
    }
}
