package dev.kiln.tokenizer;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.tokenizer.ChatTemplate;
import dev.kiln.api.tokenizer.Tokenizer;
import dev.kiln.api.tokenizer.TokenizerFactory;
import dev.kiln.tokenizer.chat.JinjaChatTemplate;
import dev.kiln.tokenizer.hf.TokenizerConfig;
import dev.kiln.tokenizer.hf.TokenizerJsonReader;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import org.osgi.service.component.annotations.Component;

/**
 * Loads byte-level BPE tokenizers from the {@code tokenizer.json} of a Hugging Face model folder (Qwen2/Qwen3,
 * DeepSeek-V3/R1, Llama 3) and their chat templates from {@code tokenizer_config.json}.
 */
@Component(property = {KilnProperties.NAME + "=bpe"})
public final class BpeTokenizerFactory implements TokenizerFactory {
    @Override
    public boolean canLoad(Path modelFolder) {
        Path file = modelFolder.resolve(TokenizerJsonReader.FILE);
        return Files.isRegularFile(file) && TokenizerJsonReader.isBpe(file);
    }

    @Override
    public Tokenizer load(Path modelFolder) throws IOException {
        return TokenizerJsonReader.read(modelFolder);
    }

    @Override
    public Optional<ChatTemplate> chatTemplate(Path modelFolder) throws IOException {
        TokenizerConfig config = TokenizerConfig.read(modelFolder);
        return config.defaultChatTemplate().map(source -> new JinjaChatTemplate(source, config.specialTokens()));
    }
}
