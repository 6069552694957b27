package dev.kiln.tokenizer.text;

import java.util.regex.Pattern;

/**
 * Translates the regular expressions of {@code tokenizer.json} files, written for Oniguruma (the engine of the
 * Hugging Face {@code tokenizers} library), into {@link java.util.regex} patterns that match the same text.
 *
 * <p>The two engines agree on the syntax these patterns use ({@code \p{L}}, lookahead, non-capturing and
 * inline-flag groups, classes) and both try alternatives left to right, but differ in a few shorthands:
 * <ul>
 *   <li>{@code \s} and {@code \S}: Oniguruma's cover Unicode White_Space (U+0085, U+00A0, U+3000, ...); Java's
 *       only ASCII, unless every class is switched to Unicode (which also changes {@code \w}, {@code \b} and
 *       costs speed). They are spelled out instead.</li>
 *   <li>{@code \h} and {@code \H}: a hexadecimal digit in Oniguruma, horizontal whitespace in Java.</li>
 *   <li>{@code (?i)}: Oniguruma folds case by Unicode rules (so {@code 'S} and {@code 'ſ} match {@code 's});
 *       Java folds only ASCII unless told {@code u}.</li>
 * </ul>
 */
public final class OnigurumaPatterns {
    /** The characters of Unicode White_Space, as a class body. */
    static final String WHITE_SPACE =
            "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

    /** GPT-2's word-splitting expression, used by the {@code ByteLevel} pre-tokenizer when {@code use_regex}. */
    public static final String GPT2_PATTERN =
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

    private OnigurumaPatterns() {}

    /**
     * Compiles an Oniguruma expression as a Java pattern with the same matches. In Oniguruma's Ruby syntax
     * {@code ^} and {@code $} are always line anchors and only {@code \n} ends a line.
     */
    public static Pattern compile(String oniguruma) {
        return Pattern.compile(translate(oniguruma), Pattern.MULTILINE | Pattern.UNIX_LINES);
    }

    /** Rewrites an Oniguruma expression into Java syntax. */
    public static String translate(String oniguruma) {
        StringBuilder out = new StringBuilder(oniguruma.length() + 64);
        int classDepth = 0;
        int n = oniguruma.length();
        for (int i = 0; i < n; i++) {
            char c = oniguruma.charAt(i);
            if (c == '\\' && i + 1 < n) {
                char escaped = oniguruma.charAt(++i);
                switch (escaped) {
                    case 's' -> out.append(classDepth > 0 ? WHITE_SPACE : "[" + WHITE_SPACE + "]");
                    // Inside a class, a nested negated class adds its complement (Java unions nested classes).
                    case 'S' -> out.append("[^").append(WHITE_SPACE).append(']');
                    case 'h' -> out.append(classDepth > 0 ? "0-9a-fA-F" : "[0-9a-fA-F]");
                    case 'H' -> out.append("[^0-9a-fA-F]");
                    default -> out.append('\\').append(escaped);
                }
                continue;
            }
            if (c == '[') {
                // Oniguruma reads '[' inside a class as a nested class, as Java does, except for POSIX brackets.
                if (i + 1 < n && oniguruma.charAt(i + 1) == ':' && classDepth > 0) {
                    int close = oniguruma.indexOf(":]", i + 2);
                    if (close > 0) {
                        out.append(posixClass(oniguruma.substring(i + 2, close)));
                        i = close + 1;
                        continue;
                    }
                }
                classDepth++;
                out.append(c);
                // A ']' right after '[' or '[^' is a literal in both engines, but Java needs it escaped.
                if (i + 1 < n && oniguruma.charAt(i + 1) == '^') {
                    out.append('^');
                    i++;
                }
                if (i + 1 < n && oniguruma.charAt(i + 1) == ']') {
                    out.append("\\]");
                    i++;
                }
                continue;
            }
            if (c == ']' && classDepth > 0) {
                classDepth--;
                out.append(c);
                continue;
            }
            if (classDepth > 0 && c == '&' && i + 1 < n && oniguruma.charAt(i + 1) == '&') {
                out.append("&&");
                i++;
                continue;
            }
            if (classDepth > 0 && (c == '&')) {
                // A lone '&' is literal in both, but escaping keeps it from pairing with a neighbour into '&&'.
                out.append("\\&");
                continue;
            }
            if (classDepth == 0 && c == '(' && i + 1 < n && oniguruma.charAt(i + 1) == '?') {
                int j = i + 2;
                int flagsStart = j;
                while (j < n && "imx-".indexOf(oniguruma.charAt(j)) >= 0) {
                    j++;
                }
                if (j > flagsStart && j < n && (oniguruma.charAt(j) == ':' || oniguruma.charAt(j) == ')')) {
                    String flags = oniguruma.substring(flagsStart, j);
                    out.append("(?").append(javaFlags(flags)).append(oniguruma.charAt(j));
                    i = j;
                    continue;
                }
            }
            out.append(c);
        }
        return out.toString();
    }

    /** Oniguruma's inline flags in Java: case folding by Unicode rules, and its 'm' (dot matches newline) is Java's 's'. */
    private static String javaFlags(String flags) {
        StringBuilder out = new StringBuilder();
        boolean negative = false;
        for (char f : flags.toCharArray()) {
            switch (f) {
                case '-' -> {
                    negative = true;
                    out.append('-');
                }
                case 'i' -> out.append(negative ? "i" : "iu");
                case 'm' -> out.append('s');
                case 'x' -> out.append('x');
                default -> throw new IllegalArgumentException("unsupported flag " + f);
            }
        }
        return out.toString();
    }

    private static String posixClass(String name) {
        return switch (name) {
            case "alpha" -> "\\p{IsAlphabetic}";
            case "digit" -> "\\p{Nd}";
            case "alnum" -> "\\p{IsAlphabetic}\\p{Nd}";
            case "space" -> WHITE_SPACE;
            case "upper" -> "\\p{IsUppercase}";
            case "lower" -> "\\p{IsLowercase}";
            case "punct" -> "\\p{P}";
            case "xdigit" -> "0-9a-fA-F";
            case "cntrl" -> "\\p{Cc}";
            default -> throw new IllegalArgumentException("unsupported POSIX class [:" + name + ":]");
        };
    }
}
