package dev.kiln.tokenizer.hf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.tokenizer.Fixtures;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The shapes {@code tokenizer_config.json} comes in. */
class TokenizerConfigTest {
    @TempDir
    Path folder;

    @Test
    void readsSpecialTokensAsStringsOrAddedTokenObjects() throws IOException {
        TokenizerConfig deepseek = TokenizerConfig.read(Fixtures.folder("deepseek_v3"));
        assertEquals("<\uff5cbegin\u2581of\u2581sentence\uff5c>", deepseek.specialTokens().get("bos_token"));
        assertEquals("<\uff5cend\u2581of\u2581sentence\uff5c>", deepseek.specialTokens().get("eos_token"));
        TokenizerConfig qwen = TokenizerConfig.read(Fixtures.folder("qwen3"));
        assertEquals(Map.of("eos_token", "<|im_end|>", "pad_token", "<|endoftext|>"), qwen.specialTokens());
        assertTrue(qwen.defaultChatTemplate().orElseThrow().startsWith("{%- if tools %}"));
    }

    @Test
    void readsNamedTemplates() throws IOException {
        Files.writeString(folder.resolve(TokenizerConfig.FILE), """
                {"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]}
                """);
        TokenizerConfig config = TokenizerConfig.read(folder);
        assertEquals(Map.of("default", "D", "tool_use", "T"), config.chatTemplates());
        assertEquals("D", config.defaultChatTemplate().orElseThrow());
    }

    @Test
    void fallsBackToTheTemplateFile() throws IOException {
        Files.writeString(folder.resolve(TokenizerConfig.FILE), "{\"eos_token\": \"</s>\"}");
        Files.writeString(folder.resolve(TokenizerConfig.TEMPLATE_FILE), "{{ messages[0].content }}\n");
        assertEquals("{{ messages[0].content }}\n", TokenizerConfig.read(folder).defaultChatTemplate().orElseThrow());
    }

    @Test
    void aFolderWithoutConfigurationHasNone() throws IOException {
        TokenizerConfig config = TokenizerConfig.read(folder);
        assertTrue(config.specialTokens().isEmpty());
        assertTrue(config.defaultChatTemplate().isEmpty());
    }

    @Test
    void rejectsMalformedFiles() throws IOException {
        Files.writeString(folder.resolve(TokenizerConfig.FILE), "{\"chat_template\": 3, ");
        assertThrows(IOException.class, () -> TokenizerConfig.read(folder));
        Files.writeString(folder.resolve(TokenizerConfig.FILE), "{\"chat_template\": [{\"template\": \"x\"}]}");
        assertThrows(IOException.class, () -> TokenizerConfig.read(folder));
    }
}
