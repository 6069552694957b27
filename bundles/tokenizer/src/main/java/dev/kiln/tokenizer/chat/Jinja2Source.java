package dev.kiln.tokenizer.chat;

import java.util.regex.Pattern;

/**
 * Rewrites a Jinja2 template into text Jinjava reads with Jinja2's meaning, where the two parsers differ on
 * constructs chat templates use:
 * <ul>
 *   <li>Jinja2 drops one trailing newline of the source and reads every line ending as {@code \n}.</li>
 *   <li>Jinjava binds a keyword argument's {@code =} tighter than operators, so
 *       {@code namespace(last=messages|length - 1)} fails there; the values are put in parentheses.</li>
 *   <li>Jinjava cannot parse a slice with a step; {@code [::-1]}, the only one templates use, becomes
 *       {@code |reverse}.</li>
 * </ul>
 */
final class Jinja2Source {
    private static final Pattern REVERSED_SLICE = Pattern.compile("\\[\\s*:\\s*:\\s*-\\s*1\\s*]");
    private static final Pattern RAW_START = Pattern.compile("\\{%[-+]?\\s*raw\\s*[-+]?%}");
    private static final Pattern RAW_END = Pattern.compile("\\{%[-+]?\\s*endraw\\s*[-+]?%}");

    private Jinja2Source() {}

    static String toJinjava(String jinja2) {
        String source = jinja2.replace("\r\n", "\n").replace('\r', '\n');
        if (source.endsWith("\n")) {
            source = source.substring(0, source.length() - 1);
        }
        StringBuilder out = new StringBuilder(source.length() + 64);
        int i = 0;
        int n = source.length();
        while (i < n) {
            var raw = RAW_START.matcher(source).region(i, n);
            if (raw.lookingAt()) {
                var end = RAW_END.matcher(source);
                int stop = end.find(raw.end()) ? end.end() : n;
                out.append(source, i, stop);
                i = stop;
                continue;
            }
            if (source.startsWith("{#", i)) {
                int stop = source.indexOf("#}", i + 2);
                stop = stop < 0 ? n : stop + 2;
                out.append(source, i, stop);
                i = stop;
                continue;
            }
            if (source.startsWith("{{", i) || source.startsWith("{%", i)) {
                char closer = source.charAt(i + 1) == '{' ? '}' : '%';
                int end = expressionEnd(source, i + 2, closer);
                out.append(source, i, i + 2);
                out.append(rewriteExpression(source.substring(i + 2, end)));
                i = end;
                continue;
            }
            out.append(source.charAt(i++));
        }
        return out.toString();
    }

    /** The index of the closing {@code }}} or {@code %}} of a tag, skipping strings and nested brackets. */
    private static int expressionEnd(String s, int from, char closer) {
        int depth = 0;
        int i = from;
        while (i < s.length()) {
            char c = s.charAt(i);
            if (c == '\'' || c == '"') {
                i = stringEnd(s, i);
                continue;
            }
            if (depth == 0 && c == closer && i + 1 < s.length() && s.charAt(i + 1) == '}') {
                return i;
            }
            if (c == '(' || c == '[' || c == '{') {
                depth++;
            } else if ((c == ')' || c == ']' || c == '}') && depth > 0) {
                depth--;
            }
            i++;
        }
        return s.length();
    }

    /** The index just past the string literal starting at {@code start}. */
    private static int stringEnd(String s, int start) {
        char quote = s.charAt(start);
        int i = start + 1;
        while (i < s.length() && s.charAt(i) != quote) {
            i += s.charAt(i) == '\\' ? 2 : 1;
        }
        return Math.min(i + 1, s.length());
    }

    static String rewriteExpression(String expression) {
        String e = REVERSED_SLICE.matcher(expression).replaceAll("|reverse");
        return parenthesizeKeywordValues(e);
    }

    /** Wraps the value of every {@code name=value} argument inside a call's parentheses. */
    private static String parenthesizeKeywordValues(String e) {
        StringBuilder out = new StringBuilder(e.length() + 8);
        // One entry per open bracket: whether it is a parenthesis (call or grouping).
        StringBuilder brackets = new StringBuilder();
        int i = 0;
        while (i < e.length()) {
            char c = e.charAt(i);
            if (c == '\'' || c == '"') {
                int end = stringEnd(e, i);
                out.append(e, i, end);
                i = end;
                continue;
            }
            if (c == '(' || c == '[' || c == '{') {
                brackets.append(c);
            } else if ((c == ')' || c == ']' || c == '}') && !brackets.isEmpty()) {
                brackets.setLength(brackets.length() - 1);
            } else if (c == '=' && isKeywordEquals(e, i) && !brackets.isEmpty()
                    && brackets.charAt(brackets.length() - 1) == '(') {
                int end = argumentEnd(e, i + 1);
                out.append("=(").append(parenthesizeKeywordValues(e.substring(i + 1, end).strip())).append(')');
                i = end;
                continue;
            }
            out.append(c);
            i++;
        }
        return out.toString();
    }

    /** A lone {@code =} after an identifier: not {@code ==}, {@code !=}, {@code <=}, {@code >=}. */
    private static boolean isKeywordEquals(String e, int i) {
        if (i + 1 < e.length() && e.charAt(i + 1) == '=') {
            return false;
        }
        int j = i - 1;
        while (j >= 0 && e.charAt(j) == ' ') {
            j--;
        }
        return j >= 0 && (Character.isLetterOrDigit(e.charAt(j)) || e.charAt(j) == '_');
    }

    /** The end of an argument value: the next {@code ,} or closing bracket at its own depth. */
    private static int argumentEnd(String e, int from) {
        int depth = 0;
        int i = from;
        while (i < e.length()) {
            char c = e.charAt(i);
            if (c == '\'' || c == '"') {
                i = stringEnd(e, i);
                continue;
            }
            if (c == '(' || c == '[' || c == '{') {
                depth++;
            } else if (c == ')' || c == ']' || c == '}') {
                if (depth == 0) {
                    return i;
                }
                depth--;
            } else if (c == ',' && depth == 0) {
                return i;
            }
            i++;
        }
        return e.length();
    }
}
