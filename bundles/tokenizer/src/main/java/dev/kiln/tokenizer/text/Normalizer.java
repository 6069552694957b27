package dev.kiln.tokenizer.text;

import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A text normalization step applied before pre-tokenization (the {@code normalizer} of a {@code tokenizer.json}).
 * Offsets are not tracked: Kiln needs the ids, not the alignment.
 */
@FunctionalInterface
public interface Normalizer {
    String normalize(String text);

    /** Unicode normalization to one of the four forms. */
    static Normalizer unicode(java.text.Normalizer.Form form) {
        return text -> java.text.Normalizer.normalize(text, form);
    }

    /** Lower-casing by Unicode rules, independent of the default locale. */
    static Normalizer lowercase() {
        return text -> text.toLowerCase(Locale.ROOT);
    }

    /** Replaces every match of a pattern by a literal. */
    static Normalizer replace(Pattern pattern, String replacement) {
        String literal = Matcher.quoteReplacement(replacement);
        return text -> pattern.matcher(text).replaceAll(literal);
    }

    /** Prepends a string to non-empty text. */
    static Normalizer prepend(String prefix) {
        return text -> text.isEmpty() ? text : prefix + text;
    }

    /** Removes Unicode White_Space from either end. */
    static Normalizer strip(boolean left, boolean right) {
        return text -> {
            int start = 0;
            int end = text.length();
            while (left && start < end && UnicodeWhiteSpace.is(text.codePointAt(start))) {
                start += Character.charCount(text.codePointAt(start));
            }
            while (right && end > start && UnicodeWhiteSpace.is(text.codePointBefore(end))) {
                end -= Character.charCount(text.codePointBefore(end));
            }
            return text.substring(start, end);
        };
    }

    /** Applies steps in order. */
    static Normalizer sequence(List<Normalizer> steps) {
        List<Normalizer> copy = List.copyOf(steps);
        return text -> {
            String result = text;
            for (Normalizer step : copy) {
                result = step.normalize(result);
            }
            return result;
        };
    }
}
