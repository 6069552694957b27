package dev.kiln.tokenizer.text;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Cutting added tokens out of text: longest match, whitespace stripping, whole words, normalized matching. */
class AddedVocabularyTest {
    private static AddedToken token(int id, String content) {
        return new AddedToken(id, content, true, false, false, false, false);
    }

    private static List<String> split(AddedVocabulary vocabulary, String text) {
        List<String> parts = new ArrayList<>();
        vocabulary.split(text, new AddedVocabulary.Segments() {
            @Override
            public void text(String normalized) {
                parts.add("'" + normalized + "'");
            }

            @Override
            public void token(int id) {
                parts.add("#" + id);
            }
        });
        return parts;
    }

    @Test
    void prefersTheLongestTokenAtTheLeftmostPosition() {
        AddedVocabulary v = new AddedVocabulary(List.of(token(1, "<a>"), token(2, "<a><b>"), token(3, "b>")), null);
        assertEquals(List.of("'x'", "#2", "'y'"), split(v, "x<a><b>y"));
        assertEquals(List.of("#1", "'<b'"), split(v, "<a><b"));
    }

    @Test
    void stripsWhitespaceOnTheSidesItIsToldTo() {
        AddedToken mask = new AddedToken(5, "<mask>", true, false, true, true, false);
        AddedVocabulary v = new AddedVocabulary(List.of(mask), null);
        assertEquals(List.of("'a'", "#5", "'b'"), split(v, "a \u3000<mask>\n b"));
    }

    @Test
    void singleWordTokensMatchOnlyBetweenNonWordCharacters() {
        AddedToken word = new AddedToken(7, "cat", false, true, false, false, false);
        AddedVocabulary v = new AddedVocabulary(List.of(word), null);
        assertEquals(List.of("'a '", "#7", "' b'"), split(v, "a cat b"));
        assertEquals(List.of("'concat cats'"), split(v, "concat cats"));
    }

    @Test
    void normalizedTokensAreMatchedInNormalizedText() {
        AddedToken raw = new AddedToken(1, "[RAW]", true, false, false, false, false);
        AddedToken normalized = new AddedToken(2, "Hello", false, false, false, false, true);
        AddedVocabulary v = new AddedVocabulary(List.of(raw, normalized), Normalizer.lowercase());
        // The raw token is found before lower-casing; the normalized one after, in its normalized spelling.
        assertEquals(List.of("#1", "' '", "#2", "' world'"), split(v, "[RAW] HELLO World"));
        assertEquals(List.of("'[raw]'"), split(v, "[raw]"));
    }
}
