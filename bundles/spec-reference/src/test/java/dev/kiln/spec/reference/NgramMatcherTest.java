package dev.kiln.spec.reference;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

/** Prompt lookup: which match of the sequence's suffix is chosen and what is drafted after it. */
class NgramMatcherTest {
    private static final int[] NONE = new int[0];
    private final NgramMatcher matcher = new NgramMatcher(2, 4);

    @Test
    void aSequenceRepeatingItsPromptDraftsTheRestOfThePrompt() {
        int[] tokens = {10, 11, 12, 13, 14, 15, 16, 17, 99, 10, 11, 12};
        assertArrayEquals(new int[] {13, 14, 15}, matcher.propose(tokens, NONE, 3));
    }

    @Test
    void theDraftStopsWhereTheSourceEnds() {
        int[] tokens = {10, 11, 12, 13, 10, 11};
        // The match ends at index 1; what follows runs up to the sequence's end.
        assertArrayEquals(new int[] {12, 13, 10, 11}, matcher.propose(tokens, NONE, 8));
    }

    @Test
    void aLongerMatchWinsOverAMoreRecentShorterOne() {
        //                 3-gram 5 6 7 -> 8        2-gram 6 7 -> 9 (more recent)
        int[] tokens = {1, 5, 6, 7, 8, 2, 3, 6, 7, 9, 4, 5, 6, 7};
        assertArrayEquals(new int[] {8, 2}, matcher.propose(tokens, NONE, 2));
    }

    @Test
    void amongEquallyLongMatchesTheMostRecentWins() {
        int[] tokens = {6, 7, 1, 2, 6, 7, 3, 4, 6, 7};
        assertArrayEquals(new int[] {3, 4}, matcher.propose(tokens, NONE, 2));
    }

    @Test
    void theReferenceTextIsSearchedAndWinsTies() {
        int[] reference = {40, 41, 42, 43, 44, 45};
        int[] tokens = {1, 2, 42, 43, 9, 9, 42, 43};
        assertArrayEquals(new int[] {44, 45}, matcher.propose(tokens, reference, 5), "tie: the reference");
        int[] longerInSequence = {1, 41, 42, 43, 9, 41, 42, 43};
        assertArrayEquals(new int[] {44, 45}, matcher.propose(longerInSequence, reference, 2), "equal 3-grams");
        int[] onlyInReference = {1, 2, 3, 44};
        assertArrayEquals(NONE, matcher.propose(onlyInReference, reference, 2), "a 1-gram is below the minimum");
        assertArrayEquals(new int[] {45}, new NgramMatcher(1, 4).propose(onlyInReference, reference, 2));
    }

    @Test
    void aSequenceFollowingARepetitiveReferenceKeepsItsPlaceInIt() {
        // The reference loops "1 2 3 4" with a different ending each time: a 4-gram match is everywhere.
        int[] reference = {1, 2, 3, 4, 50, 1, 2, 3, 4, 60, 1, 2, 3, 4, 70};
        int[] tokens = {9, 1, 2, 3, 4};
        NgramMatcher.Proposal first = matcher.propose(tokens, reference, 2, -1, 0);
        assertArrayEquals(new int[] {50, 1}, first.tokens(), "without a place: the earliest match");
        // The previous draft started at index 6 ("2 3 4 60"); the sequence stands at index 8.
        NgramMatcher.Proposal followed = matcher.propose(tokens, reference, 2, 6, 5);
        assertArrayEquals(new int[] {60, 1}, followed.tokens());
        assertEquals(9, followed.referenceStart());
        assertEquals(-1, matcher.propose(new int[] {7, 8, 9, 7, 8}, reference, 2, -1, 0).referenceStart(),
                "a draft from the sequence itself has no place in the reference");
    }

    @Test
    void nothingIsDraftedWithoutAMatchOfTheMinimumLength() {
        assertArrayEquals(NONE, matcher.propose(new int[] {1, 2, 3, 4, 5, 3}, NONE, 4));
        assertArrayEquals(NONE, matcher.propose(new int[] {7}, NONE, 4));
        assertArrayEquals(NONE, matcher.propose(new int[] {1, 2, 1, 2}, NONE, 0));
    }

    @Test
    void sizesAreChecked() {
        assertThrows(IllegalArgumentException.class, () -> new NgramMatcher(0, 3));
        assertThrows(IllegalArgumentException.class, () -> new NgramMatcher(3, 2));
    }
}
