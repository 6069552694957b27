package dev.kiln.tokenizer.bpe;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The merge algorithm on a vocabulary small enough to follow by hand. */
class BpeModelTest {
    private static final Map<String, Integer> VOCAB = Map.ofEntries(
            Map.entry("a", 0), Map.entry("b", 1), Map.entry("c", 2), Map.entry("ab", 3), Map.entry("bc", 4),
            Map.entry("abc", 5), Map.entry("aa", 6), Map.entry("<unk>", 7), Map.entry("<0x64>", 8),
            Map.entry("aaa", 9));

    private static List<String[]> merges(String... lines) {
        List<String[]> merges = new ArrayList<>();
        for (String line : lines) {
            merges.add(line.split(" "));
        }
        return merges;
    }

    private static int[] tokenize(BpeModel model, String word) {
        List<Integer> ids = new ArrayList<>();
        model.tokenize(word, ids::add);
        return ids.stream().mapToInt(Integer::intValue).toArray();
    }

    @Test
    void appliesTheLowestRankedMergeFirst() {
        BpeModel bcFirst = new BpeModel(VOCAB, merges("b c", "a b", "a bc"), null, false, false, false, 100);
        assertArrayEquals(new int[] {5}, tokenize(bcFirst, "abc"));
        BpeModel abFirst = new BpeModel(VOCAB, merges("a b", "b c"), null, false, false, false, 100);
        // Once "ab" is formed, "bc" cannot be: ab + c, and no rule joins them.
        assertArrayEquals(new int[] {3, 2}, tokenize(abFirst, "abc"));
    }

    @Test
    void mergesEqualPairsLeftToRight() {
        BpeModel model = new BpeModel(VOCAB, merges("a a"), null, false, false, false, 100);
        assertArrayEquals(new int[] {6, 0}, tokenize(model, "aaa"));
        assertArrayEquals(new int[] {6, 6}, tokenize(model, "aaaa"));
    }

    @Test
    void cachedWordsGiveTheSameIds() {
        BpeModel model = new BpeModel(VOCAB, merges("a b", "ab c"), null, false, false, false, 2);
        for (int i = 0; i < 5; i++) {
            assertArrayEquals(new int[] {5}, tokenize(model, "abc"));
            assertArrayEquals(new int[] {3, 3}, tokenize(model, "abab"));
            assertArrayEquals(new int[] {0}, tokenize(model, "a"));
        }
    }

    @Test
    void unknownCharactersAreDroppedMappedOrFused() {
        assertArrayEquals(new int[] {0, 1}, tokenize(new BpeModel(VOCAB, merges(), null, false, false, false, 0), "axyb"));
        assertArrayEquals(new int[] {0, 7, 7, 1},
                tokenize(new BpeModel(VOCAB, merges(), "<unk>", false, false, false, 0), "axyb"));
        assertArrayEquals(new int[] {0, 7, 1},
                tokenize(new BpeModel(VOCAB, merges(), "<unk>", true, false, false, 0), "axyb"));
    }

    @Test
    void byteFallbackSpellsUnknownCharactersAsByteTokens() {
        BpeModel model = new BpeModel(VOCAB, merges(), "<unk>", false, true, false, 0);
        assertArrayEquals(new int[] {0, 8, 7}, tokenize(model, "adz"));
    }

    @Test
    void ignoreMergesTakesWholeWordsFromTheVocabulary() {
        // No rule makes "aaa" from pieces, yet with ignore_merges the vocabulary entry is used.
        BpeModel model = new BpeModel(VOCAB, merges("a a"), null, false, false, true, 0);
        assertArrayEquals(new int[] {9}, tokenize(model, "aaa"));
    }

    @Test
    void rejectsMergesOutsideTheVocabulary() {
        assertThrows(IllegalArgumentException.class,
                () -> new BpeModel(VOCAB, merges("c c"), null, false, false, false, 0));
    }

    @Test
    void byteLevelAlphabetRoundTrips() {
        for (int b = 0; b < 256; b++) {
            char c = ByteLevelAlphabet.charOf(b);
            org.junit.jupiter.api.Assertions.assertEquals(b, ByteLevelAlphabet.byteOf(c));
        }
        org.junit.jupiter.api.Assertions.assertEquals("\u0120hi\u010a", ByteLevelAlphabet.encode(" hi\n"));
        assertArrayEquals(" hi\n".getBytes(), ByteLevelAlphabet.decode("\u0120hi\u010a"));
        // A token with characters outside the alphabet stands for its own UTF-8.
        assertArrayEquals("<\uff5cUser\uff5c>".getBytes(java.nio.charset.StandardCharsets.UTF_8),
                ByteLevelAlphabet.decode("<\uff5cUser\uff5c>"));
    }
}
