package dev.kiln.api.tokenizer;

import java.util.Map;

/**
 * One message of a chat, as the template sees it.
 *
 * @param role    {@code system}, {@code user}, {@code assistant}, {@code tool}
 * @param content the text
 * @param extra   other fields passed to the template as they came (tool calls, names, reasoning content)
 */
public record ChatMessage(String role, String content, Map<String, Object> extra) {
    public ChatMessage(String role, String content) {
        this(role, content, Map.of());
    }
}
