package dev.kiln.tokenizer.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.kiln.api.tokenizer.ChatTemplate;
import dev.kiln.tokenizer.BpeTokenizerFactory;
import dev.kiln.tokenizer.Fixtures;
import java.io.IOException;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** The fixture models' own chat templates render exactly what transformers rendered. */
class FixtureChatTemplateTest {
    static List<Fixtures.ChatCase> chatCases() {
        return Fixtures.chatCases();
    }

    @ParameterizedTest
    @MethodSource("chatCases")
    void rendersLikeTransformers(Fixtures.ChatCase c) throws IOException {
        ChatTemplate template = new BpeTokenizerFactory().chatTemplate(Fixtures.folder(c.tokenizer())).orElseThrow();
        assertEquals(c.prompt(), template.render(c.messages(), true, Map.of()));
    }
}
