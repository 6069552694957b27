package dev.kiln.spec.mtp;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.speculative.Draft;
import dev.kiln.api.speculative.DraftRequest;
import dev.kiln.api.speculative.DraftSession;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The session against the fixtures' float64 reference: given the reference's final hidden states, the first draft
 * token is the argmax of the reference MTP logits at the sequence's second-to-last position, whether the states
 * arrive at once or step by step (the module's cache carries the earlier ones).
 */
class MtpSessionTest {
    /** Reference MTP logits whose top two are closer than this may legitimately swap under float32. */
    private static final float TIE = 1e-3f;

    private static int[] top2(float[] logits, int row, int vocab) {
        int best = -1;
        int second = -1;
        for (int v = 0; v < vocab; v++) {
            float x = logits[row * vocab + v];
            if (best < 0 || x > logits[row * vocab + best]) {
                second = best;
                best = v;
            } else if (second < 0 || x > logits[row * vocab + second]) {
                second = v;
            }
        }
        return new int[] {best, second};
    }

    private static void assertArgmax(float[] mtpLogits, int row, int vocab, int drafted, String what) {
        int[] top = top2(mtpLogits, row, vocab);
        float margin = mtpLogits[row * vocab + top[0]] - mtpLogits[row * vocab + top[1]];
        if (margin > TIE) assertEquals(top[0], drafted, what);
        else assertTrue(drafted == top[0] || drafted == top[1], what + " (a near tie)");
    }

    @ParameterizedTest
    @ValueSource(strings = {"deepseek-v3-tiny", "deepseek-v3-tiny-fp8"})
    void theFirstDraftTokenIsTheReferenceModulesArgmax(String fixture) {
        int[] prompt = Harness.prompt(fixture, 0);
        float[] states = Harness.floats(fixture, "last_hidden_0");
        float[] mtpLogits = Harness.floats(fixture, "mtp_logits_0");
        try (CausalLanguageModel target = Harness.build(Harness.fixture(fixture), 64);
             DraftSession session = new MtpProposer(1 << 20, 16).open(target)) {
            int hidden = target.hiddenSize();
            int vocab = target.vocabSize();
            // Whole prefixes at once: tokens 0 .. c, states of positions 0 .. c - 1.
            for (int c : new int[] {1, 5, 12, prompt.length - 1}) {
                var request = new DraftRequest("whole-" + c, Arrays.copyOf(prompt, c + 1), new int[0],
                        Arrays.copyOf(states, c * hidden), 0, 1);
                Draft d = session.propose(List.of(request)).getFirst();
                assertEquals(1, d.tokens().length);
                assertArgmax(mtpLogits, c - 1, vocab, d.tokens()[0], fixture + " prefix of " + (c + 1));
            }
            // Step by step, as the engine reports decoding: one new token and one new state per call.
            for (int c = 1; c < prompt.length; c++) {
                var request = new DraftRequest("steps", Arrays.copyOf(prompt, c + 1), new int[0],
                        Arrays.copyOfRange(states, (c - 1) * hidden, c * hidden), c - 1, 2);
                Draft d = session.propose(List.of(request)).getFirst();
                assertEquals(2, d.tokens().length, "chained to a second token");
                assertArgmax(mtpLogits, c - 1, vocab, d.tokens()[0], fixture + " step " + c);
            }
        }
    }

    @Test
    void stateForRejectedTokensIsRolledBackAndReportsWithoutDraftsAddEntries() {
        String fixture = "deepseek-v3-tiny";
        int[] prompt = Harness.prompt(fixture, 0);
        float[] states = Harness.floats(fixture, "last_hidden_0");
        float[] mtpLogits = Harness.floats(fixture, "mtp_logits_0");
        try (CausalLanguageModel target = Harness.build(Harness.fixture(fixture), 64);
             DraftSession session = new MtpProposer(1 << 20, 16).open(target)) {
            int hidden = target.hiddenSize();
            int vocab = target.vocabSize();
            // A prefill chunk reported without a draft: positions 0 .. 9 (tokens 0 .. 10 known).
            var chunk = new DraftRequest("s", Arrays.copyOf(prompt, 11), new int[0], Arrays.copyOf(states, 10 * hidden),
                    0, 0);
            assertEquals(0, session.propose(List.of(chunk)).getFirst().tokens().length);
            // A wrong continuation is drafted for, then the sequence goes on with the real tokens.
            int[] wrong = Arrays.copyOf(prompt, 16);
            for (int i = 11; i < 16; i++) wrong[i] = (prompt[i] + 1) % vocab;
            var detour = new DraftRequest("s", wrong, new int[0], new float[5 * hidden], 10, 1);
            session.propose(List.of(detour));
            var real = new DraftRequest("s", Arrays.copyOf(prompt, 16), new int[0],
                    Arrays.copyOfRange(states, 10 * hidden, 15 * hidden), 10, 1);
            Draft d = session.propose(List.of(real)).getFirst();
            assertArgmax(mtpLogits, 14, vocab, d.tokens()[0], "after rolling back the detour");
        }
    }

    @Test
    void aModelWithoutAModuleIsRefused() {
        try (CausalLanguageModel target = Harness.build(Harness.fixture("qwen2-tiny"), 16)) {
            var e = assertThrows(IllegalArgumentException.class, () -> new MtpProposer().open(target));
            assertTrue(e.getMessage().contains("no multi-token prediction module"), e.getMessage());
        }
    }
}
