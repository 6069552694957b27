package dev.kiln.tokenizer.hf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.kiln.tokenizer.ExtendedReference;
import dev.kiln.tokenizer.Fixtures;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Parity with the reference on what the fixture file does not cover: Unicode whitespace and case folding in the
 * split expressions, normalization, added tokens inside text, long words, random mixed-script strings, lossy decoding
 * of invalid UTF-8, and the post-processor's special tokens.
 */
class ExtendedParityTest {
    static List<ExtendedReference.EncodingCase> encodingCases() {
        return ExtendedReference.encodingCases();
    }

    static List<ExtendedReference.InvalidUtf8Case> invalidUtf8Cases() {
        return ExtendedReference.invalidUtf8Cases();
    }

    static List<ExtendedReference.SpecialCase> specialCases() {
        return ExtendedReference.specialCases();
    }

    @ParameterizedTest
    @MethodSource("encodingCases")
    void encodesAndDecodesLikeTheReference(ExtendedReference.EncodingCase c) {
        HfTokenizer tokenizer = Fixtures.tokenizer(c.tokenizer());
        assertArrayEquals(c.ids(), tokenizer.encode(c.text(), false));
        assertEquals(c.decoded(), tokenizer.decode(c.ids(), false));
        assertEquals(c.decodedSkippingSpecial(), tokenizer.decode(c.ids(), true));
    }

    @ParameterizedTest
    @MethodSource("invalidUtf8Cases")
    void decodesInvalidUtf8LikeTheReference(ExtendedReference.InvalidUtf8Case c) {
        assertEquals(c.decoded(), Fixtures.tokenizer(c.tokenizer()).decode(c.ids(), false));
    }

    @ParameterizedTest
    @MethodSource("specialCases")
    void addsSpecialTokensAsThePostProcessorSays(ExtendedReference.SpecialCase c) {
        assertArrayEquals(c.ids(), Fixtures.tokenizer(c.tokenizer()).encode(c.text(), true));
    }
}
