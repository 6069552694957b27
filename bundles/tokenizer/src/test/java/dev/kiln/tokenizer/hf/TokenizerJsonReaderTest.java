package dev.kiln.tokenizer.hf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Reading the sections of a {@code tokenizer.json}, on files small enough to write by hand. */
class TokenizerJsonReaderTest {
    @TempDir
    Path folder;

    /** A byte-level vocabulary of "h", "i", " " (Ġ), "hi", "Ġhi" with the given sections. */
    private Path write(String merges, String preTokenizer, String postProcessor, String extraModel) throws IOException {
        String json = """
                {"version": "1.0", "truncation": null,
                 "added_tokens": [{"id": 5, "content": "<s>", "special": true, "single_word": false,
                                   "lstrip": false, "rstrip": false, "normalized": false}],
                 "normalizer": null,
                 "pre_tokenizer": %s,
                 "post_processor": %s,
                 "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
                 "model": {"type": "BPE", %s "vocab": {"h": 0, "i": 1, "\\u0120": 2, "hi": 3, "\\u0120hi": 4},
                           "merges": %s}}
                """.formatted(preTokenizer, postProcessor, extraModel, merges);
        Path file = folder.resolve("tokenizer.json");
        Files.writeString(file, json);
        return file;
    }

    private static final String BYTE_LEVEL = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}";

    @Test
    void readsMergesInBothSpellings() throws IOException {
        HfTokenizer strings = TokenizerJsonReader.readFile(write("[\"h i\", \"\\u0120 hi\"]", BYTE_LEVEL, "null", ""));
        HfTokenizer pairs = TokenizerJsonReader.readFile(
                write("[[\"h\", \"i\"], [\"\\u0120\", \"hi\"]]", BYTE_LEVEL, "null", ""));
        assertArrayEquals(new int[] {3, 4, 5, 2}, strings.encode("hi hi<s> ", false));
        assertArrayEquals(strings.encode("hi hi<s> ", false), pairs.encode("hi hi<s> ", false));
        assertEquals("hi hi<s> ", pairs.decode(new int[] {3, 4, 5, 2}, false));
        assertEquals("hi hi ", pairs.decode(new int[] {3, 4, 5, 2}, true));
    }

    @Test
    void addsThePrefixSpaceOfTheByteLevelPreTokenizer() throws IOException {
        HfTokenizer t = TokenizerJsonReader.readFile(write("[\"h i\", \"\\u0120 hi\"]",
                "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}", "null", ""));
        assertArrayEquals(new int[] {4}, t.encode("hi", false));
    }

    @Test
    void templateProcessingAddsItsSpecialTokensOnlyWhenAsked() throws IOException {
        String template = """
                {"type": "TemplateProcessing",
                 "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                            {"SpecialToken": {"id": "<s>", "type_id": 0}}],
                 "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [5], "tokens": ["<s>"]}}}
                """;
        HfTokenizer t = TokenizerJsonReader.readFile(write("[\"h i\"]", BYTE_LEVEL, template, ""));
        assertArrayEquals(new int[] {5, 3, 5}, t.encode("hi", true));
        assertArrayEquals(new int[] {3}, t.encode("hi", false));
        String sequence = "{\"type\": \"Sequence\", \"processors\": [" + BYTE_LEVEL + ", " + template + "]}";
        assertArrayEquals(new int[] {5, 3, 5},
                TokenizerJsonReader.readFile(write("[\"h i\"]", BYTE_LEVEL, sequence, "")).encode("hi", true));
    }

    @Test
    void refusesWhatItDoesNotImplement() throws IOException {
        assertThrows(IOException.class, () -> TokenizerJsonReader.readFile(write("[]", BYTE_LEVEL, "null",
                "\"continuing_subword_prefix\": \"##\",")));
        assertThrows(IOException.class, () -> TokenizerJsonReader.readFile(write("[]", BYTE_LEVEL, "null",
                "\"dropout\": 0.1,")));
        assertThrows(IOException.class, () -> TokenizerJsonReader.readFile(write("[]",
                "{\"type\": \"Metaspace\", \"replacement\": \"_\"}", "null", "")));
        assertThrows(IOException.class, () -> TokenizerJsonReader.readFile(write("[\"h x\"]", BYTE_LEVEL, "null", "")));
        assertThrows(IOException.class, () -> TokenizerJsonReader.readFile(write("[\"h i j\"]", BYTE_LEVEL, "null", "")));
    }

    @Test
    void recognisesBpeFilesWithoutReadingThemWhole() throws IOException {
        assertTrue(TokenizerJsonReader.isBpe(write("[]", BYTE_LEVEL, "null", "")));
        Path wordPiece = folder.resolve("wordpiece.json");
        Files.writeString(wordPiece, "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
        assertFalse(TokenizerJsonReader.isBpe(wordPiece));
        Path broken = folder.resolve("broken.json");
        Files.writeString(broken, "{\"model\": ");
        assertFalse(TokenizerJsonReader.isBpe(broken));
    }
}
