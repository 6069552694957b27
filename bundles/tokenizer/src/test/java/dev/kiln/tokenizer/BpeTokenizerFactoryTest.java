package dev.kiln.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The factory service and the vocabulary queries of the loaded tokenizers. */
class BpeTokenizerFactoryTest {
    private final BpeTokenizerFactory factory = new BpeTokenizerFactory();

    @Test
    void loadsOnlyFoldersWithABpeTokenizerJson(@TempDir Path folder) throws IOException {
        assertFalse(factory.canLoad(folder));
        Files.writeString(folder.resolve("tokenizer_config.json"), "{\"chat_template\": \"x\"}");
        assertFalse(factory.canLoad(folder), "a template alone is no tokenizer");
        Files.writeString(folder.resolve("tokenizer.json"), "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
        assertFalse(factory.canLoad(folder));
        for (String name : Fixtures.NAMES) {
            assertTrue(factory.canLoad(Fixtures.folder(name)));
        }
    }

    @Test
    void aFolderWithoutTemplateHasNone(@TempDir Path folder) throws IOException {
        assertTrue(factory.chatTemplate(folder).isEmpty());
    }

    @Test
    void loadsThroughTheService() throws IOException {
        Tokenizer qwen = factory.load(Fixtures.folder("qwen3"));
        assertArrayEquals(new int[] {9707, 11, 1246, 525, 498, 30}, qwen.encode("Hello, how are you?", true));
    }

    @Test
    void answersVocabularyQueries() {
        Tokenizer qwen = Fixtures.tokenizer("qwen3");
        assertEquals(151_669, qwen.vocabSize());
        assertEquals(151_645, qwen.tokenId("<|im_end|>").orElseThrow());
        assertEquals("<|im_end|>", qwen.tokenString(151_645));
        assertTrue(qwen.isSpecial(151_645));
        assertFalse(qwen.isSpecial(151_667), "<think> is added but not special");
        assertFalse(qwen.isSpecial(9707));
        assertEquals("\u0120how", qwen.tokenString(1246));
        assertEquals(1246, qwen.tokenId("\u0120how").orElseThrow());
        assertTrue(qwen.tokenId("no such token").isEmpty());
        assertThrows(IllegalArgumentException.class, () -> qwen.tokenString(151_700));
        // Ids past the vocabulary (models pad their embeddings) decode to nothing, as in the reference.
        assertEquals("Hello", qwen.decode(new int[] {9707, 151_700}, false));

        Tokenizer deepseek = Fixtures.tokenizer("deepseek_v3");
        assertEquals(128_815, deepseek.vocabSize());
        assertEquals(0, deepseek.tokenId("<\uff5cbegin\u2581of\u2581sentence\uff5c>").orElseThrow());
        assertTrue(deepseek.isSpecial(0));
        assertEquals("", deepseek.decode(new int[] {0, 1}, true));
    }
}
