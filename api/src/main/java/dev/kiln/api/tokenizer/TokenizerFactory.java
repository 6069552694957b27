package dev.kiln.api.tokenizer;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Optional;

/**
 * Loads tokenizers from model folders (service property {@code kiln.name}, e.g. {@code bpe}).
 */
public interface TokenizerFactory {
    /** Whether the folder holds a tokenizer this factory reads (e.g. a {@code tokenizer.json}). */
    boolean canLoad(Path modelFolder);

    /** Loads the tokenizer. */
    Tokenizer load(Path modelFolder) throws IOException;

    /** Loads the chat template, if the folder has one. */
    Optional<ChatTemplate> chatTemplate(Path modelFolder) throws IOException;
}
