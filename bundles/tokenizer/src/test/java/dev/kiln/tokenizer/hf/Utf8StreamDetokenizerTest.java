package dev.kiln.tokenizer.hf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.tokenizer.IncrementalDetokenizer;
import dev.kiln.tokenizer.ExtendedReference;
import dev.kiln.tokenizer.Fixtures;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Streaming decoding: whole characters only, and the same text as decoding everything at once. */
class Utf8StreamDetokenizerTest {
    record Stream(String tokenizer, int[] ids, String label) {
        @Override
        public String toString() {
            return label;
        }
    }

    static List<Stream> streams() {
        List<Stream> streams = new ArrayList<>();
        Fixtures.encodingCases().forEach(c -> streams.add(new Stream(c.tokenizer(), c.ids(), "fixture " + c)));
        ExtendedReference.encodingCases().forEach(c -> streams.add(new Stream(c.tokenizer(), c.ids(), "extended " + c)));
        ExtendedReference.invalidUtf8Cases().forEach(c -> streams.add(new Stream(c.tokenizer(), c.ids(), "bytes " + c)));
        return streams;
    }

    private static List<String> feed(IncrementalDetokenizer detokenizer, int[] ids) {
        List<String> chunks = new ArrayList<>();
        for (int id : ids) {
            chunks.add(detokenizer.add(id));
        }
        chunks.add(detokenizer.flush());
        return chunks;
    }

    @ParameterizedTest
    @MethodSource("streams")
    void concatenationEqualsDecodingAtOnce(Stream s) {
        HfTokenizer tokenizer = Fixtures.tokenizer(s.tokenizer());
        for (boolean skip : new boolean[] {false, true}) {
            List<String> chunks = feed(tokenizer.newDetokenizer(skip), s.ids());
            assertEquals(tokenizer.decode(s.ids(), skip), String.join("", chunks), "skipSpecialTokens=" + skip);
        }
    }

    @ParameterizedTest
    @MethodSource("streams")
    void neverEmitsABrokenCharacterFromValidText(Stream s) {
        HfTokenizer tokenizer = Fixtures.tokenizer(s.tokenizer());
        String whole = tokenizer.decode(s.ids(), false);
        // Only text without replacement characters is valid UTF-8 from end to end.
        if (whole.indexOf('\uFFFD') >= 0) {
            return;
        }
        IncrementalDetokenizer detokenizer = tokenizer.newDetokenizer(false);
        for (int id : s.ids()) {
            String chunk = detokenizer.add(id);
            assertFalse(chunk.indexOf('\uFFFD') >= 0, "replacement character in chunk " + chunk);
            if (!chunk.isEmpty()) {
                assertFalse(Character.isLowSurrogate(chunk.charAt(0)), "chunk starts inside a surrogate pair");
                assertFalse(Character.isHighSurrogate(chunk.charAt(chunk.length() - 1)), "chunk ends inside a pair");
            }
        }
        assertEquals("", detokenizer.flush());
    }

    @Test
    void holdsAChineseCharacterSplitOverByteTokensUntilComplete() {
        HfTokenizer qwen = Fixtures.tokenizer("qwen3");
        // 中 is E4 B8 AD; spell it with three single-byte tokens.
        IncrementalDetokenizer detokenizer = qwen.newDetokenizer(false);
        assertEquals("", detokenizer.add(byteToken(qwen, 0xE4)));
        assertEquals("", detokenizer.add(byteToken(qwen, 0xB8)));
        assertEquals("\u4e2d", detokenizer.add(byteToken(qwen, 0xAD)));
        assertEquals("", detokenizer.flush());
    }

    @Test
    void emitsAnEmojiWholeAcrossTokens() {
        HfTokenizer deepseek = Fixtures.tokenizer("deepseek_v3");
        // The reference spells 𝔘 (U+1D518, four bytes) with three tokens.
        int[] ids = deepseek.encode("\uD835\uDD18", false);
        assertTrue(ids.length > 1, "expected the character to span tokens");
        IncrementalDetokenizer detokenizer = deepseek.newDetokenizer(false);
        for (int i = 0; i < ids.length - 1; i++) {
            assertEquals("", detokenizer.add(ids[i]));
        }
        assertEquals("\uD835\uDD18", detokenizer.add(ids[ids.length - 1]));
    }

    @Test
    void releasesBytesThatCanNeverCompleteAtOnce() {
        HfTokenizer qwen = Fixtures.tokenizer("qwen3");
        IncrementalDetokenizer detokenizer = qwen.newDetokenizer(false);
        // A continuation byte with no lead cannot be completed by anything that follows.
        assertEquals("\uFFFD", detokenizer.add(byteToken(qwen, 0x80)));
        assertEquals("", detokenizer.add(byteToken(qwen, 0xE4)));
        // 'A' ends the pending sequence: one replacement for the truncated lead, then the letter.
        assertEquals("\uFFFDA", detokenizer.add(qwen.tokenId("A").orElseThrow()));
    }

    @Test
    void flushReleasesATruncatedSequenceAsOneReplacement() {
        HfTokenizer qwen = Fixtures.tokenizer("qwen3");
        IncrementalDetokenizer detokenizer = qwen.newDetokenizer(false);
        assertEquals("", detokenizer.add(byteToken(qwen, 0xF0)));
        assertEquals("", detokenizer.add(byteToken(qwen, 0x9F)));
        assertEquals("\uFFFD", detokenizer.flush());
        assertEquals("", detokenizer.flush());
    }

    @Test
    void skipsSpecialTokensButKeepsAddedOnes() {
        HfTokenizer qwen = Fixtures.tokenizer("qwen3");
        int[] ids = qwen.encode("<|im_start|>assistant\n<think>\nx</think>y<|im_end|>", false);
        StringBuilder streamed = new StringBuilder();
        IncrementalDetokenizer detokenizer = qwen.newDetokenizer(true);
        for (int id : ids) {
            streamed.append(detokenizer.add(id));
        }
        streamed.append(detokenizer.flush());
        // <think> is an added token but not a special one: it stays.
        assertEquals("assistant\n<think>\nx</think>y", streamed.toString());
    }

    @Test
    void completePrefixStopsBeforeAPendingLeadOnly() {
        assertEquals(3, Utf8StreamDetokenizer.completePrefix(bytes('a', 'b', 'c'), 3));
        assertEquals(1, Utf8StreamDetokenizer.completePrefix(bytes('a', 0xE4, 0xB8), 3));
        assertEquals(4, Utf8StreamDetokenizer.completePrefix(bytes('a', 0xE4, 0xB8, 0xAD), 4));
        assertEquals(0, Utf8StreamDetokenizer.completePrefix(bytes(0xF0, 0x9F, 0x98), 3));
        // E0 80 can never be valid (overlong), ED A0 neither (surrogate): nothing to wait for.
        assertEquals(2, Utf8StreamDetokenizer.completePrefix(bytes(0xE0, 0x80), 2));
        assertEquals(2, Utf8StreamDetokenizer.completePrefix(bytes(0xED, 0xA0), 2));
        assertEquals(1, Utf8StreamDetokenizer.completePrefix(bytes(0xF5), 1));
    }

    private static byte[] bytes(int... values) {
        byte[] b = new byte[values.length];
        for (int i = 0; i < values.length; i++) {
            b[i] = (byte) values[i];
        }
        return b;
    }

    private static int byteToken(HfTokenizer tokenizer, int value) {
        return tokenizer.tokenId(String.valueOf(dev.kiln.tokenizer.bpe.ByteLevelAlphabet.charOf(value))).orElseThrow();
    }
}
