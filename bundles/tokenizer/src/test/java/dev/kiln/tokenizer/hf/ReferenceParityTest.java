package dev.kiln.tokenizer.hf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.kiln.tokenizer.Fixtures;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Every encoding and decoding of the reference files, id for id and character for character. */
class ReferenceParityTest {
    static List<Fixtures.EncodingCase> encodingCases() {
        return Fixtures.encodingCases();
    }

    /** The renderings the reference encoded too (those of qwen3). */
    static List<Fixtures.ChatCase> encodedChatCases() {
        return Fixtures.chatCases().stream().filter(c -> c.ids() != null).toList();
    }

    @ParameterizedTest
    @MethodSource("encodingCases")
    void encodesLikeTheReference(Fixtures.EncodingCase c) {
        HfTokenizer tokenizer = Fixtures.tokenizer(c.tokenizer());
        assertArrayEquals(c.ids(), tokenizer.encode(c.text(), false));
    }

    @ParameterizedTest
    @MethodSource("encodingCases")
    void decodesLikeTheReference(Fixtures.EncodingCase c) {
        HfTokenizer tokenizer = Fixtures.tokenizer(c.tokenizer());
        assertEquals(c.decoded(), tokenizer.decode(c.ids(), false));
    }

    @ParameterizedTest
    @MethodSource("encodedChatCases")
    void encodesRenderedPromptsLikeTheReference(Fixtures.ChatCase c) {
        HfTokenizer tokenizer = Fixtures.tokenizer(c.tokenizer());
        assertArrayEquals(c.ids(), tokenizer.encode(c.prompt(), false));
        assertEquals(c.prompt(), tokenizer.decode(c.ids(), false));
    }
}
