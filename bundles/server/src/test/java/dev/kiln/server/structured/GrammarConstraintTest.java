package dev.kiln.server.structured;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonParser;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class GrammarConstraintTest {
    private static final int EOS = 0, THINK_END = 1;
    /** Two special tokens, then single characters and longer pieces as a BPE vocabulary would have them. */
    private static final String[] VOCAB = {"<eos>", "</think>", "{", "}", "[", "]", ":", ",", "\"", "a", "1", "-", "0", ".",
        "e", "t", "r", "u", "f", "l", "s", "n", " ", "\n", "\\", "{\"", "\":", "\",", "\"}", "true", "null", "12", "a b",
        "\"a\":1}", "é", "}}", "]}", "x", "\t"};

    private static final TestVocabulary TOKENIZER = new TestVocabulary(VOCAB, Set.of(EOS, THINK_END));

    /** A sequence of an engine that names the end-of-sequence token. */
    private static TestVocabulary.View view(int[] output) {
        return new TestVocabulary.View(output, EOS);
    }

    private static TestVocabulary.View view(List<Integer> output) {
        return new TestVocabulary.View(output, EOS);
    }

    /** Decoding under the constraint with random logits: every sequence that ends is one JSON object. */
    @Test
    void randomLogitsDecodedUnderTheConstraintEndAsOneJsonObject() {
        SplittableRandom random = new SplittableRandom(3);
        int ended = 0;
        for (int round = 0; round < 400; round++) {
            GrammarConstraint constraint = GrammarConstraint.jsonObject(TOKENIZER, -1);
            List<Integer> output = new ArrayList<>();
            int token = -1;
            for (int step = 0; step < 300 && token != EOS; step++) {
                float[] logits = new float[VOCAB.length];
                for (int i = 0; i < logits.length; i++) logits[i] = (float) random.nextGaussian();
                logits[EOS] += 3; // a model that likes to stop
                logits[3] += 1; // and to close objects
                constraint.process(logits, view(output));
                token = argmax(logits);
                output.add(token);
            }
            String text = text(output);
            JsonPrefix prefix = new JsonPrefix();
            assertTrue(prefix.accept(text.getBytes(StandardCharsets.UTF_8)), "not a JSON prefix: " + text);
            if (token == EOS) {
                ended++;
                assertTrue(prefix.complete(), "ended before the object closed: " + text);
                assertTrue(JsonParser.parseString(text).isJsonObject(), text);
            }
        }
        assertTrue(ended > 200, "few sequences ended: " + ended);
    }

    /** At every point of random constrained decoding, the mask is what reading every token from the text gives. */
    @Test
    void theMaskIsWhatReadingEveryTokenFromTheTextGives() {
        SplittableRandom random = new SplittableRandom(9);
        for (int round = 0; round < 200; round++) {
            GrammarConstraint constraint = GrammarConstraint.jsonObject(TOKENIZER, -1);
            List<Integer> output = new ArrayList<>();
            for (int step = 0; step < 60; step++) {
                float[] logits = new float[VOCAB.length];
                constraint.process(logits, view(output));
                String text = text(output);
                JsonPrefix now = new JsonPrefix();
                assertTrue(now.accept(text.getBytes(StandardCharsets.UTF_8)));
                List<Integer> choices = new ArrayList<>();
                for (int id = 0; id < VOCAB.length; id++) {
                    boolean expected;
                    if (id == EOS) {
                        expected = now.complete();
                    } else if (TOKENIZER.isSpecial(id)) {
                        expected = false;
                    } else {
                        JsonPrefix p = new JsonPrefix();
                        expected = !now.complete() && p.accept((text + VOCAB[id]).getBytes(StandardCharsets.UTF_8));
                    }
                    String token = VOCAB[id];
                    assertEquals(expected, logits[id] != Float.NEGATIVE_INFINITY, () -> "token '" + token + "' after " + text);
                    if (expected) choices.add(id);
                }
                int token = choices.get(random.nextInt(choices.size()));
                if (token == EOS) break;
                output.add(token);
            }
        }
    }

    @Test
    void theEndOnlyOnceCompleteAndNothingElseAfter() {
        GrammarConstraint constraint = GrammarConstraint.jsonObject(TOKENIZER, -1);
        float[] logits = new float[VOCAB.length];
        constraint.process(logits, view(new int[0]));
        assertEquals(List.of("{", " ", "\n", "{\"", "\t"), allowed(logits), "an object may start, after blanks");
        int[] whole = {25, 9, 26, 31, 3}; // {"  a  ":  12  }
        logits = new float[VOCAB.length];
        constraint.process(logits, view(whole));
        assertEquals(List.of("<eos>"), allowed(logits), "the end of sequence alone");
        logits = new float[VOCAB.length];
        GrammarConstraint.jsonObject(TOKENIZER, -1).process(logits, new TestVocabulary.View(whole));
        assertEquals(List.of("<eos>", "</think>"), allowed(logits), "any special token where the engine names none");
    }

    @Test
    void reasoningIsFreeAndTheAnswerAfterItsEndIsConstrained() {
        GrammarConstraint constraint = GrammarConstraint.jsonObject(TOKENIZER, THINK_END);
        float[] logits = new float[VOCAB.length];
        constraint.process(logits, view(new int[] {37, 9, 21})); // "x", "a", " " while thinking
        assertEquals(VOCAB.length, allowed(logits).size(), "nothing is masked while reasoning");
        logits = new float[VOCAB.length];
        constraint.process(logits, view(new int[] {37, 9, THINK_END, 23}));
        assertEquals(List.of("{", " ", "\n", "{\"", "\t"), allowed(logits));
    }

    @Test
    void anOutputThatDoesNotContinueWhatWasSeenIsReadAgain() {
        GrammarConstraint constraint = GrammarConstraint.jsonObject(TOKENIZER, -1);
        float[] logits = new float[VOCAB.length];
        constraint.process(logits, view(new int[] {25, 9, 26, 31, 3})); // complete
        logits = new float[VOCAB.length];
        constraint.process(logits, view(new int[] {25, 9, 26})); // a shorter output: {"a":
        List<String> allowed = allowed(logits);
        assertTrue(allowed.containsAll(List.of("1", "true", "null", "\"", "[", "{")) && !allowed.contains("<eos>"), allowed.toString());
    }

    private static List<String> allowed(float[] logits) {
        List<String> allowed = new ArrayList<>();
        for (int i = 0; i < logits.length; i++) if (logits[i] != Float.NEGATIVE_INFINITY) allowed.add(VOCAB[i]);
        return allowed;
    }

    private static int argmax(float[] logits) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    private static String text(List<Integer> output) {
        return TOKENIZER.text(output);
    }
}
