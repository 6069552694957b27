package dev.kiln.config.files;

import java.io.IOException;
import java.io.StringReader;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;

/**
 * The text of a {@code .cfg} file (the {@link Properties} format) brought to a wanted set of values with the least
 * change: lines of unchanged keys, comments and blank lines stay as they were, a changed value is rewritten in place
 * after the key as it was written, a removed key's lines go, and new keys are appended in name order.
 */
final class CfgText {
    private final List<Entry> entries = new ArrayList<>();
    private final String lineSeparator;

    /** One logical line: a comment or blank line (key null), or a key's line with its continuation lines. */
    private record Entry(String text, String key, String value) {}

    private CfgText(String text) {
        this.lineSeparator = text.contains("\r\n") ? "\r\n" : "\n";
        int start = 0;
        while (start < text.length()) {
            int end = start;
            while (true) {
                int newline = text.indexOf('\n', end);
                int lineEnd = newline < 0 ? text.length() : newline + 1;
                String physical = text.substring(end, lineEnd);
                end = lineEnd;
                // A line continues when it ends in an odd number of backslashes, except in comments and at the end.
                if (newline < 0 || isCommentOrBlank(text.substring(start, end)) || !continues(physical)) break;
            }
            String logical = text.substring(start, end);
            if (isCommentOrBlank(logical)) {
                entries.add(new Entry(logical, null, null));
            } else {
                Map.Entry<String, String> parsed = parse(logical);
                entries.add(parsed == null ? new Entry(logical, null, null) : new Entry(logical, parsed.getKey(), parsed.getValue()));
            }
            start = end;
        }
    }

    /** The values the text defines, as {@link Properties#load} reads them (the last of repeated keys wins). */
    static Map<String, String> values(String text) {
        Map<String, String> values = new HashMap<>();
        for (Entry e : new CfgText(text).entries) if (e.key != null) values.put(e.key, e.value);
        return values;
    }

    /**
     * The text changed to define exactly {@code wanted}, or null when it already does (then nothing needs writing).
     */
    static String withValues(String text, Map<String, String> wanted) {
        if (values(text).equals(wanted)) return null;
        CfgText cfg = new CfgText(text);
        // The last line of a repeated key is the one that counts: it is the one rewritten, the others stay.
        Map<String, Integer> last = new HashMap<>();
        for (int i = 0; i < cfg.entries.size(); i++) if (cfg.entries.get(i).key != null) last.put(cfg.entries.get(i).key, i);
        Map<String, String> added = new TreeMap<>(wanted);
        added.keySet().removeAll(last.keySet());
        StringBuilder out = new StringBuilder(text.length() + 64);
        for (int i = 0; i < cfg.entries.size(); i++) {
            Entry e = cfg.entries.get(i);
            // A key's line continued into the end of the file would take the first added line as its own: it is
            // written out whole instead.
            boolean continuedAtEnd = i == cfg.entries.size() - 1 && !added.isEmpty() && continues(lastLine(e.text));
            if (e.key == null) {
                out.append(e.text);
            } else if (wanted.containsKey(e.key)) {
                String value = wanted.get(e.key);
                if (!continuedAtEnd && (i != last.get(e.key) || value.equals(e.value))) {
                    out.append(e.text);
                } else {
                    out.append(rewritten(e, value));
                }
            }
            // a key no longer wanted: all its lines go
        }
        if (!added.isEmpty() && !out.isEmpty()) {
            if (out.charAt(out.length() - 1) != '\n') out.append(cfg.lineSeparator);
            // A comment or unreadable line continued into the end: a blank line ends it before the added ones.
            if (continues(lastLine(out))) out.append(cfg.lineSeparator);
        }
        added.forEach((k, v) -> out.append(escape(k, true)).append('=').append(escape(v, false)).append(cfg.lineSeparator));
        return out.toString();
    }

    /** A key's line with a new value after the key and separator exactly as written, and the old line ending. */
    private static String rewritten(Entry e, String value) {
        String firstLine = e.text.lines().findFirst().orElse("");
        int valueStart = valueStart(firstLine);
        String prefix = valueStart < 0 ? escape(e.key, true) + "=" : firstLine.substring(0, valueStart);
        String ending = e.text.endsWith("\r\n") ? "\r\n" : e.text.endsWith("\n") ? "\n" : e.text.endsWith("\r") ? "\r" : "";
        return prefix + escape(value, false) + ending;
    }

    /**
     * Where the value starts in a key's first physical line: after the key (up to an unescaped separator or blank),
     * blanks, one optional '=' or ':', and blanks; -1 when the line is the key alone or the key or separator runs
     * past this line.
     */
    static int valueStart(String line) {
        int i = 0;
        while (i < line.length() && isBlank(line.charAt(i))) i++;
        while (i < line.length()) {
            char c = line.charAt(i);
            if (c == '\\') {
                if (i == line.length() - 1) return -1; // the key continues on the next line
                i += 2;
                continue;
            }
            if (c == '=' || c == ':' || isBlank(c)) break;
            i++;
        }
        if (i == line.length()) return -1; // a key alone: no separator to keep
        while (i < line.length() && isBlank(line.charAt(i))) i++;
        if (i < line.length() && (line.charAt(i) == '=' || line.charAt(i) == ':')) i++;
        while (i < line.length() && isBlank(line.charAt(i))) i++;
        if (i < line.length() && line.charAt(i) == '\\' && i == line.length() - 1) return -1; // value on the next line
        return i;
    }

    private static Map.Entry<String, String> parse(String logical) {
        Properties one = new Properties();
        try {
            one.load(new StringReader(logical));
        } catch (IOException e) {
            throw new UncheckedIOException(e); // a StringReader does not fail
        } catch (IllegalArgumentException malformed) {
            return null; // a malformed \\u escape: no value the folder's reader would take either; the line stays as text
        }
        if (one.isEmpty()) return null;
        String key = one.stringPropertyNames().iterator().next();
        return Map.entry(key, one.getProperty(key));
    }

    private static String lastLine(CharSequence text) {
        int end = text.length() - 1;
        int start = end;
        while (start > 0 && text.charAt(start - 1) != '\n') start--;
        return text.subSequence(start, end + 1).toString();
    }

    private static boolean isCommentOrBlank(String logical) {
        String s = logical.stripLeading();
        return s.isEmpty() || s.charAt(0) == '#' || s.charAt(0) == '!';
    }

    private static boolean continues(String physical) {
        String line = physical.endsWith("\r\n") ? physical.substring(0, physical.length() - 2)
                : physical.endsWith("\n") || physical.endsWith("\r") ? physical.substring(0, physical.length() - 1) : physical;
        int backslashes = 0;
        for (int i = line.length() - 1; i >= 0 && line.charAt(i) == '\\'; i--) backslashes++;
        return backslashes % 2 == 1;
    }

    private static boolean isBlank(char c) {
        return c == ' ' || c == '\t' || c == '\f';
    }

    /**
     * Escaped as {@link Properties#store} would: backslash escapes for separators, comment marks and control
     * characters, {@code \\uXXXX} outside printable ASCII (so the file reads the same in any encoding), and in a
     * value only leading blanks escaped.
     */
    static String escape(String s, boolean key) {
        StringBuilder out = new StringBuilder(s.length() + 8);
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '\\' -> out.append("\\\\");
                case '\t' -> out.append("\\t");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\f' -> out.append("\\f");
                case ' ' -> out.append(key || i == 0 ? "\\ " : " ");
                case '=', ':', '#', '!' -> out.append('\\').append(c);
                default -> {
                    if (c < 0x20 || c > 0x7e) out.append(String.format("\\u%04X", (int) c));
                    else out.append(c);
                }
            }
        }
        return out.toString();
    }
}
