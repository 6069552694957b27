package dev.kiln.server.openai;

import dev.kiln.api.engine.InferenceEngine;
import dev.kiln.api.engine.ModelDescription;
import dev.kiln.api.tokenizer.ChatTemplate;
import dev.kiln.api.tokenizer.Tokenizer;

/**
 * The model a request is served by, with what the API needs around it: its tokenizer and chat template when the
 * checkpoint has them (without, prompts must be token ids and tokens come back as {@code token_id:N}), and whether
 * its output starts with reasoning to separate ({@code <think>...</think>}, DeepSeek-R1).
 */
record ServedModel(InferenceEngine engine, ModelDescription description, Tokenizer tokenizer, ChatTemplate chatTemplate,
                   boolean reasoning) {
    boolean hasTokenizer() {
        return tokenizer != null;
    }
}
