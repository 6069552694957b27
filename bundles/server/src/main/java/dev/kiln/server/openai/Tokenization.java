package dev.kiln.server.openai;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.kiln.api.tokenizer.ChatMessage;
import java.util.ArrayList;
import java.util.List;

/** vLLM's {@code POST /tokenize} (a prompt, or messages through the chat template) and {@code POST /detokenize}. */
final class Tokenization {
    private Tokenization() {}

    static JsonObject tokenize(JsonRequest r, ServedModel model) {
        if (!model.hasTokenizer()) throw ApiException.invalid(null, "This model has no tokenizer");
        int[] ids;
        if (r.has("messages")) {
            if (model.chatTemplate() == null) throw ApiException.invalid("messages", "This model has no chat template");
            JsonElement raw = r.raw("messages");
            if (!(raw instanceof JsonArray array)) throw ApiException.invalid("messages", "'messages' must be a list");
            List<ChatMessage> messages = new ArrayList<>();
            for (JsonElement e : array) {
                if (!(e instanceof JsonObject m)) throw ApiException.invalid("messages", "each message must be an object");
                JsonRequest mr = new JsonRequest(m);
                messages.add(new ChatMessage(mr.requiredString("role"), mr.string("content", "")));
            }
            String rendered;
            try {
                rendered = model.chatTemplate().render(messages, r.bool("add_generation_prompt", true), java.util.Map.of());
            } catch (IllegalArgumentException e) {
                throw ApiException.invalid("messages", e.getMessage());
            }
            ids = model.tokenizer().encode(rendered, r.bool("add_special_tokens", false));
        } else {
            ids = model.tokenizer().encode(r.requiredString("prompt"), r.bool("add_special_tokens", true));
        }
        JsonObject o = new JsonObject();
        o.addProperty("count", ids.length);
        o.addProperty("max_model_len", model.description().contextLength());
        JsonArray tokens = new JsonArray();
        for (int id : ids) tokens.add(id);
        o.add("tokens", tokens);
        return o;
    }

    static JsonObject detokenize(JsonRequest r, ServedModel model) {
        if (!model.hasTokenizer()) throw ApiException.invalid(null, "This model has no tokenizer");
        if (!r.has("tokens")) throw ApiException.invalid("tokens", "'tokens' is required");
        int[] ids = r.ints("tokens", 0, model.tokenizer().vocabSize() - 1);
        JsonObject o = new JsonObject();
        o.addProperty("prompt", model.tokenizer().decode(ids, false));
        return o;
    }
}
