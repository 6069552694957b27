package dev.kiln.server.openai;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.tokenizer.IncrementalDetokenizer;
import dev.kiln.api.tokenizer.Tokenizer;
import java.util.List;
import java.util.OptionalInt;
import org.junit.jupiter.api.Test;

class ChoiceTextTest {
    /** One character per token: token i is the i-th character of ALPHABET. */
    private static final String ALPHABET = "abcdefghijklmnopqrstuvwxyz <>/.!?\n";

    private static final Tokenizer CHARS = new Tokenizer() {
        public int vocabSize() { return ALPHABET.length(); }
        public int[] encode(String text, boolean special) { return text.chars().map(ALPHABET::indexOf).toArray(); }
        public String decode(int[] ids, boolean skip) {
            StringBuilder sb = new StringBuilder();
            for (int id : ids) sb.append(ALPHABET.charAt(id));
            return sb.toString();
        }
        public OptionalInt tokenId(String token) { return OptionalInt.empty(); }
        public String tokenString(int id) { return String.valueOf(ALPHABET.charAt(id)); }
        public boolean isSpecial(int id) { return false; }
        public IncrementalDetokenizer newDetokenizer(boolean skip) {
            return new IncrementalDetokenizer() {
                public String add(int id) { return String.valueOf(ALPHABET.charAt(id)); }
                public String flush() { return ""; }
            };
        }
    };

    /** Feeds text token by token and concatenates what the stream releases. */
    private static String[] stream(ChoiceText t, String text) {
        StringBuilder reasoning = new StringBuilder();
        StringBuilder content = new StringBuilder();
        for (int id : CHARS.encode(text, false)) {
            ChoiceText.Delta d = t.add(new int[] {id});
            reasoning.append(d.reasoning());
            content.append(d.content());
            if (t.stopped()) break;
        }
        ChoiceText.Delta d = t.finish();
        reasoning.append(d.reasoning());
        content.append(d.content());
        return new String[] {reasoning.toString(), content.toString()};
    }

    @Test
    void textEndsBeforeTheFirstStopStringAndNothingPastItIsReleased() {
        ChoiceText t = new ChoiceText(CHARS, true, List.of("stop", "xy"), false, false);
        String[] out = stream(t, "hello world stop and more");
        assertEquals("hello world ", out[1]);
        assertTrue(t.stopped());
    }

    @Test
    void aPartialStopStringAtTheEndIsReleasedWhenTheChoiceEnds() {
        ChoiceText t = new ChoiceText(CHARS, true, List.of("stop"), false, false);
        assertEquals("and sto", stream(t, "and sto")[1]);
        assertFalse(t.stopped());
    }

    @Test
    void reasoningIsSeparatedWhenTheOutputOpensThink() {
        ChoiceText t = new ChoiceText(CHARS, true, List.of(), true, false);
        String[] out = stream(t, "<think>let me see</think>the answer");
        assertEquals("let me see", out[0]);
        assertEquals("the answer", out[1]);
    }

    @Test
    void reasoningStartsInsideWhenThePromptOpenedThink() {
        ChoiceText t = new ChoiceText(CHARS, true, List.of(), true, true);
        String[] out = stream(t, "hmm\n</think>\nyes");
        assertEquals("hmm\n", out[0]);
        assertEquals("\nyes", out[1]);
    }

    @Test
    void withoutReasoningParsingThinkTagsStayInTheContent() {
        ChoiceText t = new ChoiceText(CHARS, true, List.of(), false, false);
        assertEquals("<think>a</think>b", stream(t, "<think>a</think>b")[1]);
    }

    @Test
    void withoutATokenizerTokensAreSpelledAsIds() {
        ChoiceText t = new ChoiceText(null, true, List.of(), false, false);
        ChoiceText.Delta d = t.add(new int[] {5, 17});
        assertEquals("token_id:5token_id:17", d.content() + t.finish().content());
    }
}
