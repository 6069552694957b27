package dev.kiln.tokenizer.text;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** Oniguruma expressions keep their meaning in Java. */
class OnigurumaPatternsTest {
    private static List<String> matches(String oniguruma, String text) {
        Matcher m = OnigurumaPatterns.compile(oniguruma).matcher(text);
        List<String> found = new ArrayList<>();
        while (m.find()) {
            found.add(m.group());
        }
        return found;
    }

    @Test
    void whitespaceShorthandsCoverUnicodeWhiteSpace() {
        for (String space : new String[] {"\u00a0", "\u3000", "\u2028", "\u0085", "\u2009", "\u000b"}) {
            assertTrue(OnigurumaPatterns.compile("\\s").matcher(space).matches(), "\\s should match U+"
                    + Integer.toHexString(space.charAt(0)));
            assertFalse(OnigurumaPatterns.compile("\\S").matcher(space).matches());
            assertFalse(OnigurumaPatterns.compile("[^\\s\\p{L}]").matcher(space).matches(),
                    "a negated class with \\s must exclude the space");
        }
        // Zero-width space is not White_Space.
        assertFalse(OnigurumaPatterns.compile("\\s").matcher("\u200b").matches());
        assertTrue(OnigurumaPatterns.compile("[\\S]").matcher("\u200b").matches());
    }

    @Test
    void negatedNonSpaceInsideAClassMeansSpaceOnly() {
        assertTrue(OnigurumaPatterns.compile("[^\\S]").matcher("\u3000").matches());
        assertFalse(OnigurumaPatterns.compile("[^\\S]").matcher("a").matches());
    }

    @Test
    void caseInsensitiveGroupsFoldByUnicodeRules() {
        Pattern p = OnigurumaPatterns.compile("(?i:'s|'ll)");
        assertTrue(p.matcher("'S").matches());
        assertTrue(p.matcher("'LL").matches());
        assertTrue(p.matcher("'\u017f").matches(), "long s folds to s");
    }

    @Test
    void hexShorthandIsAHexDigitNotHorizontalSpace() {
        assertEquals(List.of("a", "F", "0"), matches("\\h", "a F 0 g"));
    }

    @Test
    void lineAnchorsAndDotFollowRuby() {
        assertEquals(List.of("a", "b"), matches("^\\w", "a\nb"));
        assertEquals(List.of("x\u2028y"), matches("x.y", "x\u2028y"), "only \\n ends a line");
    }

    @Test
    void qwenWordSplitKeepsSpacesBeforeWords() {
        String qwen = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                + "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
        assertEquals(List.of("I", "'M", " sure", "   ", " x", "1", "2", "!!\n", "\u3000\u3000", "\u3000y"),
                matches(qwen, "I'M sure    x12!!\n\u3000\u3000\u3000y"));
    }

    @Test
    void lonelyAmpersandInAClassStaysLiteral() {
        assertEquals(List.of("&", "%"), matches("[%&]", "a&b%"));
    }
}
