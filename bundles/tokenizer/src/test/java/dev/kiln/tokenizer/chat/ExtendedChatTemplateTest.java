package dev.kiln.tokenizer.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.kiln.api.tokenizer.ChatTemplate;
import dev.kiln.tokenizer.BpeTokenizerFactory;
import dev.kiln.tokenizer.ExtendedReference;
import dev.kiln.tokenizer.Fixtures;
import dev.kiln.tokenizer.hf.TokenizerConfig;
import java.io.IOException;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Renderings transformers produced for richer conversations: thinking turns, {@code enable_thinking}, tools and tool
 * calls (schemas through {@code tojson}), tool results, reasoning content, no generation prompt; and a template that
 * exercises the Python string methods, slicing, {@code namespace}, loop controls and {@code tojson} options.
 */
class ExtendedChatTemplateTest {
    static List<ExtendedReference.ChatCase> chatCases() {
        return ExtendedReference.chatCases();
    }

    @ParameterizedTest
    @MethodSource("chatCases")
    void rendersLikeTransformers(ExtendedReference.ChatCase c) throws IOException {
        ChatTemplate template = c.template() == null
                ? new BpeTokenizerFactory().chatTemplate(Fixtures.folder(c.tokenizer())).orElseThrow()
                : new JinjaChatTemplate(c.template(),
                        TokenizerConfig.read(Fixtures.folder(c.tokenizer())).specialTokens());
        assertEquals(c.prompt(), template.render(c.messages(), c.addGenerationPrompt(), c.variables()));
    }
}
