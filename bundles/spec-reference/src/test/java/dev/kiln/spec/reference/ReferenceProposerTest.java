package dev.kiln.spec.reference;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kiln.api.speculative.Draft;
import dev.kiln.api.speculative.DraftRequest;
import dev.kiln.api.speculative.DraftSession;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The proposer's sessions: one draft per request, capped, configured by Config Admin properties. */
class ReferenceProposerTest {
    private static DraftRequest request(String id, int[] tokens, int[] reference, int maxTokens) {
        return new DraftRequest(id, tokens, reference, null, 0, maxTokens);
    }

    @Test
    void aSessionDraftsForEachRequestInOrder() {
        var proposer = new ReferenceProposer(2, 4, 0);
        try (DraftSession session = proposer.open(null)) {
            assertFalse(session.needsTargetHiddenStates());
            List<Draft> drafts = session.propose(List.of(
                    request("a", new int[] {5, 6, 7, 8, 5, 6}, new int[0], 2),
                    request("b", new int[] {1, 2, 3}, new int[] {9, 2, 3, 4, 5}, 3),
                    request("c", new int[] {5, 6, 7, 8, 5, 6}, new int[0], 0),
                    request("d", new int[] {1, 2, 3}, new int[0], 3)));
            assertEquals(4, drafts.size());
            assertArrayEquals(new int[] {7, 8}, drafts.get(0).tokens());
            assertArrayEquals(new int[] {4, 5}, drafts.get(1).tokens(), "from the reference, up to its end");
            assertEquals(0, drafts.get(2).tokens().length, "a request that only reports gets no draft");
            assertEquals(0, drafts.get(3).tokens().length);
        }
    }

    @Test
    void theConfigurationSetsTheSizesAndCapsTheDraft() {
        var proposer = new ReferenceProposer();
        proposer.configure(Map.of("min-ngram", "1", "max-ngram", "3", "max-draft-tokens", "1"));
        try (DraftSession session = proposer.open(null)) {
            Draft d = session.propose(List.of(request("a", new int[] {4, 5, 6, 4}, new int[0], 5))).getFirst();
            assertArrayEquals(new int[] {5}, d.tokens(), "a 1-gram match, one token");
        }
        assertThrows(IllegalArgumentException.class, () -> proposer.configure(Map.of("min-ngram", "x")));
        assertThrows(IllegalArgumentException.class, () -> proposer.configure(Map.of("min-ngram", 3, "max-ngram", 2)));
    }
}
