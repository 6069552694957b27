package dev.kiln.server.openai;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.kiln.api.engine.TokenLogprobs;
import dev.kiln.api.tokenizer.Tokenizer;
import java.nio.charset.StandardCharsets;

/**
 * How tokens are spelled in log-probability listings: their text, or {@code token_id:N} when the model has no
 * tokenizer or the client asked for ids ({@code return_tokens_as_token_ids}).
 */
final class TokenStrings {
    private final Tokenizer tokenizer;
    private final boolean asIds;

    TokenStrings(Tokenizer tokenizer, boolean asIds) {
        this.tokenizer = tokenizer;
        this.asIds = asIds || tokenizer == null;
    }

    String of(int token) {
        return asIds ? "token_id:" + token : tokenizer.decode(new int[] {token}, false);
    }

    /** A chat logprobs entry: {@code {token, logprob, bytes, top_logprobs}}. */
    JsonObject chatEntry(TokenLogprobs lp) {
        JsonObject o = entry(lp.token(), lp.logprob());
        JsonArray top = new JsonArray();
        for (int i = 0; i < lp.topTokens().length; i++) top.add(entry(lp.topTokens()[i], lp.topLogprobs()[i]));
        o.add("top_logprobs", top);
        return o;
    }

    private JsonObject entry(int token, float logprob) {
        String text = of(token);
        JsonObject o = new JsonObject();
        o.addProperty("token", text);
        o.addProperty("logprob", finite(logprob));
        JsonArray bytes = new JsonArray();
        for (byte b : text.getBytes(StandardCharsets.UTF_8)) bytes.add(b & 0xff);
        o.add("bytes", bytes);
        return o;
    }

    /** OpenAI reports impossible tokens with a very negative number rather than -Infinity, which JSON cannot hold. */
    static double finite(float logprob) {
        return Float.isFinite(logprob) ? logprob : -9999.0;
    }
}
