package dev.kiln.tokenizer.text;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** The five split behaviours, on the example the {@code tokenizers} documentation gives for each. */
class RegexSplitterTest {
    private static List<String> split(SplitBehavior behavior, boolean invert, String pattern, String text) {
        List<String> pieces = new ArrayList<>();
        new RegexSplitter(Pattern.compile(pattern), behavior, invert).split(text, pieces::add);
        return pieces;
    }

    @Test
    void behaviours() {
        String text = "the-final--countdown";
        assertEquals(List.of("the", "final", "countdown"), split(SplitBehavior.REMOVED, false, "-", text));
        assertEquals(List.of("the", "-", "final", "-", "-", "countdown"), split(SplitBehavior.ISOLATED, false, "-", text));
        assertEquals(List.of("the-", "final-", "-", "countdown"),
                split(SplitBehavior.MERGED_WITH_PREVIOUS, false, "-", text));
        assertEquals(List.of("the", "-final", "-", "-countdown"),
                split(SplitBehavior.MERGED_WITH_NEXT, false, "-", text));
        assertEquals(List.of("the", "-", "final", "--", "countdown"), split(SplitBehavior.CONTIGUOUS, false, "-", text));
    }

    @Test
    void invertSwapsMatchesAndGaps() {
        // Keeping only what matches: the Whitespace pre-tokenizer's trick.
        assertEquals(List.of("ab", "cd"), split(SplitBehavior.REMOVED, true, "\\w+", "ab, cd"));
        assertEquals(List.of("ab", ", cd"), split(SplitBehavior.MERGED_WITH_NEXT, true, "\\w+", "ab, cd"));
    }

    @Test
    void emptyInputGivesNoPieces() {
        assertEquals(List.of(), split(SplitBehavior.ISOLATED, false, "-", ""));
    }

    @Test
    void parsesTheJsonSpellings() {
        assertEquals(SplitBehavior.MERGED_WITH_PREVIOUS, SplitBehavior.fromJson("MergedWithPrevious"));
        assertEquals(SplitBehavior.CONTIGUOUS, SplitBehavior.fromJson("Contiguous"));
    }
}
