package dev.kiln.api.tokenizer;

import java.util.List;
import java.util.Map;

/**
 * A model's chat template (the Jinja template of its {@code tokenizer_config.json}), rendering messages into the
 * prompt text the model was trained on.
 */
public interface ChatTemplate {
    /**
     * Renders the conversation.
     *
     * @param addGenerationPrompt whether to open the assistant's turn at the end
     * @param variables           extra template variables (e.g. {@code enable_thinking}); may be empty
     * @throws IllegalArgumentException when the template rejects the conversation (its {@code raise_exception})
     */
    String render(List<ChatMessage> messages, boolean addGenerationPrompt, Map<String, Object> variables);
}
