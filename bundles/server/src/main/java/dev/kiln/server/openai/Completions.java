package dev.kiln.server.openai;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import dev.kiln.api.engine.FinishReason;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.api.engine.TokenLogprobs;
import dev.kiln.api.sampling.LogitsProcessor;
import dev.kiln.api.tokenizer.ChatMessage;
import dev.kiln.server.prometheus.RequestTimer;
import dev.kiln.server.structured.GrammarConstraint;
import dev.kiln.server.structured.JsonSchema;
import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.function.IntFunction;
import java.util.function.Supplier;

/**
 * {@code POST /v1/chat/completions} and {@code POST /v1/completions}: parse, build the prompts, run one engine
 * request per choice, and answer with one JSON body or a stream of server-sent events, in OpenAI's shapes.
 */
final class Completions {
    private static final int DEFAULT_COMPLETION_TOKENS = 16;

    private Completions() {}

    /** One prompt, as tokens, with the text it came from (for echo) and whether it opened a reasoning block. */
    private record Prompt(int[] tokens, String text, boolean opensReasoning) {}

    static void chat(JsonRequest r, ServedModel model, Responder out, RequestTimer timer) throws IOException, InterruptedException {
        if (!model.hasTokenizer()) {
            throw ApiException.invalid("messages", "This model has no tokenizer: use /v1/completions with token-id prompts");
        }
        if (model.chatTemplate() == null) throw ApiException.invalid("messages", "This model has no chat template");
        IntFunction<LogitsProcessor> grammar = structuredOutput(r, true, model);
        List<ChatMessage> messages = messages(r);
        boolean addGenerationPrompt = r.bool("add_generation_prompt", true);
        Map<String, Object> variables = new LinkedHashMap<>();
        JsonObject kwargs = r.object("chat_template_kwargs");
        if (kwargs != null) kwargs.entrySet().forEach(e -> variables.put(e.getKey(), Json.toJava(e.getValue())));
        String rendered;
        try {
            rendered = model.chatTemplate().render(messages, addGenerationPrompt, variables);
        } catch (IllegalArgumentException e) {
            throw ApiException.invalid("messages", e.getMessage());
        }
        int[] tokens = model.tokenizer().encode(rendered, false);
        String tail = rendered.stripTrailing();
        Prompt prompt = new Prompt(tokens, rendered, model.reasoning() && tail.endsWith("<think>"));

        int[] reference = reference(r, model);
        boolean logprobs = r.bool("logprobs", false);
        int top = r.integer("top_logprobs", 0, 0, 20);
        if (r.has("top_logprobs") && !logprobs) throw ApiException.invalid("top_logprobs", "'top_logprobs' requires 'logprobs' to be true");
        GenerationParams params = GenerationParams.read(r, true, model.description() == null ? Integer.MAX_VALUE : vocab(model), logprobs ? top : null);
        // With a reasoning block opened by the prompt, the JSON is the answer after it.
        int startAfter = prompt.opensReasoning() ? model.tokenizer().tokenId("</think>").orElse(-1) : -1;
        run(List.of(prompt), params, logprobs, false, true, reference, model, out, "chatcmpl-", timer,
                constraints(grammar, startAfter));
    }

    static void completion(JsonRequest r, ServedModel model, Responder out, RequestTimer timer) throws IOException, InterruptedException {
        IntFunction<LogitsProcessor> grammar = structuredOutput(r, false, model);
        List<Prompt> prompts = prompts(r, model);
        int[] reference = reference(r, model);
        Integer logprobs = r.integer("logprobs", 0, 20);
        boolean echo = r.bool("echo", false);
        GenerationParams params = GenerationParams.read(r, false, vocab(model), logprobs);
        if (r.has("suffix")) throw ApiException.invalid("suffix", "'suffix' is not supported");
        run(prompts, params, logprobs != null, echo, false, reference, model, out, "cmpl-", timer,
                constraints(grammar, -1));
    }

    /** Each choice's own constraint (none without structured output), starting after {@code startAfter}. */
    private static Supplier<List<LogitsProcessor>> constraints(IntFunction<LogitsProcessor> grammar, int startAfter) {
        return grammar == null ? List::of : () -> List.of(grammar.apply(startAfter));
    }

    /**
     * The structured output the request asks for, as what makes a choice's constraint from the token it starts after:
     * null for none, JSON mode ({@code response_format: {"type": "json_object"}}), or a schema
     * ({@code "json_schema"}, compiled here so that a schema that cannot be enforced is refused now). Requests for
     * what Kiln does not do and whose silent omission would change the answer (schema keywords outside the supported
     * subset, vLLM's guided decoding, tool calls) are refused with a 400 naming the parameter, as vLLM refuses tool
     * calls without a parser: the client then knows, instead of receiving text it did not ask for.
     */
    static IntFunction<LogitsProcessor> structuredOutput(JsonRequest r, boolean chat, ServedModel model) {
        IntFunction<LogitsProcessor> json = null;
        JsonObject format = r.object("response_format");
        if (format != null) {
            JsonRequest f = new JsonRequest(format);
            String type = f.string("type", "text");
            switch (type) {
                case "text" -> { }
                case "json_object" -> json = start -> GrammarConstraint.jsonObject(model.tokenizer(), start);
                case "json_schema" -> {
                    JsonObject wrapper = f.object("json_schema");
                    JsonObject schema = wrapper == null ? null : new JsonRequest(wrapper).object("schema");
                    if (schema == null) {
                        throw ApiException.invalid("response_format", "'response_format' of type 'json_schema' needs "
                                + "'json_schema': {'name': ..., 'schema': {...}}");
                    }
                    try {
                        JsonSchema compiled = GrammarConstraint.compileSchema(schema);
                        json = start -> GrammarConstraint.jsonSchema(model.tokenizer(), start, compiled);
                    } catch (IllegalArgumentException e) {
                        throw ApiException.invalid("response_format", "the JSON schema cannot be enforced: " + e.getMessage());
                    }
                }
                default -> throw ApiException.invalid("response_format", "'response_format' of type '" + type
                        + "' is not supported; 'text', 'json_object' and 'json_schema' are");
            }
            if (json != null && !model.hasTokenizer()) {
                throw ApiException.invalid("response_format", "structured output needs the model's tokenizer, which this model lacks");
            }
        }
        for (String guided : List.of("guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs")) {
            if (r.has(guided)) {
                throw ApiException.invalid(guided, "'" + guided + "' (structured output) is not supported");
            }
        }
        if (!chat) return json;
        for (String tools : List.of("tools", "functions")) {
            JsonElement given = r.raw(tools);
            boolean none = given == null || given.isJsonNull() || (given instanceof JsonArray a && a.isEmpty());
            if (none) continue;
            JsonElement choice = r.raw(tools.equals("tools") ? "tool_choice" : "function_call");
            boolean textOnly = choice != null && choice.isJsonPrimitive() && "none".equals(choice.getAsString());
            if (!textOnly) {
                throw ApiException.invalid(tools, "tool calling is not supported (Kiln has no tool-call parser); send "
                        + (tools.equals("tools") ? "\"tool_choice\"" : "\"function_call\"") + ": \"none\" for a text answer");
            }
        }
        return json;
    }

    /**
     * Kiln's {@code reference} extension: text (or token ids) the answer is likely to repeat — a document being
     * edited, code being refactored — that the reference-matching speculative proposer drafts from.
     */
    private static int[] reference(JsonRequest r, ServedModel model) {
        JsonElement raw = r.raw("reference");
        if (raw == null) return new int[0];
        if (raw instanceof JsonPrimitive p && p.isString()) {
            if (!model.hasTokenizer()) throw ApiException.invalid("reference", "This model has no tokenizer: give 'reference' as token ids");
            return model.tokenizer().encode(p.getAsString(), false);
        }
        if (raw instanceof JsonArray a) return JsonRequest.toInts(a, "reference", 0, vocab(model) - 1);
        throw ApiException.invalid("reference", "'reference' must be a string or a list of token ids");
    }

    private static int vocab(ServedModel model) {
        return model.hasTokenizer() ? Math.max(model.tokenizer().vocabSize(), 1) : Integer.MAX_VALUE;
    }

    /**
     * @param constraints makes each choice's own logits processors (JSON mode), a new one per choice: they hold the
     *                    state of one sequence
     */
    private static void run(List<Prompt> prompts, GenerationParams params, boolean logprobs, boolean echo, boolean chat,
                            int[] reference, ServedModel model, Responder out, String idPrefix, RequestTimer timer,
                            Supplier<List<LogitsProcessor>> constraints)
            throws IOException, InterruptedException {
        int contextLength = model.description().contextLength();
        String id = idPrefix + UUID.randomUUID().toString().replace("-", "");
        List<GenerationRequest> requests = new ArrayList<>();
        List<ChoiceText> texts = new ArrayList<>();
        for (int p = 0; p < prompts.size(); p++) {
            Prompt prompt = prompts.get(p);
            int room = contextLength - prompt.tokens().length;
            int maxTokens = params.maxTokens() != null ? params.maxTokens() : chat ? room : Math.min(DEFAULT_COMPLETION_TOKENS, room);
            if (room <= 0 || maxTokens > room) {
                throw ApiException.invalid(chat ? "messages" : "prompt", "This model's maximum context length is " + contextLength
                        + " tokens. However, you requested " + (prompt.tokens().length + Math.max(maxTokens, 0)) + " tokens ("
                        + prompt.tokens().length + " in the prompt, " + Math.max(maxTokens, 0) + " for the completion).");
            }
            for (int c = 0; c < params.n(); c++) {
                var sampling = params.sampling();
                if (sampling.seed() != null && params.n() > 1) {
                    sampling = sampling.withSeed(sampling.seed() + c);
                }
                int promptLogprobs = echo && logprobs ? params.topLogprobs() : -1;
                requests.add(new GenerationRequest(id + "-" + requests.size(), prompt.tokens(), sampling, maxTokens,
                        Math.min(params.minTokens(), maxTokens), params.stopTokenIds(), params.ignoreEos(), promptLogprobs, reference,
                        constraints.get()));
                texts.add(new ChoiceText(model.tokenizer(), params.skipSpecialTokens(), params.stop(), chat && model.reasoning(),
                        prompt.opensReasoning()));
            }
        }
        TokenStrings strings = new TokenStrings(model.tokenizer(), params.tokensAsIds());
        Rendering rendering = new Rendering(id, model.description().id(), chat, strings);
        int choices = requests.size();
        int promptTokens = prompts.stream().mapToInt(p -> p.tokens().length).sum() * params.n();
        int[] generated = new int[choices];
        int cached = 0;
        String[] finish = new String[choices];
        List<List<TokenLogprobs>> choiceLogprobs = new ArrayList<>();
        List<List<TokenLogprobs>> promptLogprobs = new ArrayList<>();
        for (int i = 0; i < choices; i++) {
            choiceLogprobs.add(new ArrayList<>());
            promptLogprobs.add(null);
        }
        boolean[] started = new boolean[choices];

        try (GenerationSession session = new GenerationSession(model.engine(), requests, timer)) {
            if (params.stream()) out.startStream();
            GenerationSession.ChoiceEvent e;
            while ((e = session.next()) != null) {
                int i = e.index();
                if (finish[i] != null) continue;
                if (e.error() != null) {
                    // The engine failed the request (it stopped, or is reloading with a new configuration): the
                    // client may retry, so this is a 503, not an internal error.
                    throw new ApiException(503, "service_unavailable", "The request was ended by the engine: "
                            + e.error().getMessage(), null, "request_ended");
                }
                TokenEvent ev = e.event();
                if (ev.promptLogprobs() != null) promptLogprobs.set(i, ev.promptLogprobs());
                cached += ev.cachedTokens();
                ChoiceText text = texts.get(i);
                ChoiceText.Delta delta = text.add(ev.tokens());
                generated[i] += ev.tokens().length;
                List<TokenLogprobs> lp = params.trimmed(ev.logprobs());
                if (lp != null) choiceLogprobs.get(i).addAll(lp);
                String reason = null;
                if (text.stopped()) {
                    reason = "stop";
                    session.cancel(i);
                } else if (ev.finish() != null) {
                    reason = ev.finish() == FinishReason.LENGTH ? "length" : "stop";
                }
                if (reason != null) {
                    ChoiceText.Delta rest = text.finish();
                    delta = new ChoiceText.Delta(delta.reasoning() + rest.reasoning(), delta.content() + rest.content());
                    finish[i] = reason;
                }
                if (params.stream()) {
                    int prefix = i / params.n();
                    String echoed = echo && !started[i] ? prompts.get(prefix).text() : "";
                    if (!started[i] || !delta.isEmpty() || reason != null || (lp != null && !lp.isEmpty())) {
                        out.event(rendering.chunk(i, !started[i], echoed, delta, lp, reason,
                                echo && !started[i] ? promptLogprobs.get(i) : null,
                                echo && !started[i] ? prompts.get(prefix).tokens() : null));
                        started[i] = true;
                    }
                }
            }
        }
        JsonObject usage = usage(promptTokens, sum(generated), cached);
        if (params.stream()) {
            if (params.includeUsage()) out.event(rendering.usageChunk(usage));
            out.endStream();
            return;
        }
        JsonArray choiceArray = new JsonArray();
        for (int i = 0; i < choices; i++) {
            Prompt prompt = prompts.get(i / params.n());
            ChoiceText t = texts.get(i);
            choiceArray.add(rendering.choice(i, echo ? prompt.text() : "", t.reasoning(), t.content(),
                    logprobs ? choiceLogprobs.get(i) : null, finish[i],
                    echo && logprobs ? promptLogprobs.get(i) : null, echo ? prompt.tokens() : null));
        }
        out.json(200, rendering.completion(choiceArray, usage));
    }

    private static int sum(int[] values) {
        int s = 0;
        for (int v : values) s += v;
        return s;
    }

    static JsonObject usage(int prompt, int completion, int cached) {
        JsonObject u = new JsonObject();
        u.addProperty("prompt_tokens", prompt);
        u.addProperty("completion_tokens", completion);
        u.addProperty("total_tokens", prompt + completion);
        if (cached > 0) {
            JsonObject details = new JsonObject();
            details.addProperty("cached_tokens", cached);
            u.add("prompt_tokens_details", details);
        }
        return u;
    }

    private static List<ChatMessage> messages(JsonRequest r) {
        JsonElement raw = r.raw("messages");
        if (!(raw instanceof JsonArray array) || array.isEmpty()) {
            throw ApiException.invalid("messages", "'messages' must be a non-empty list of messages");
        }
        List<ChatMessage> out = new ArrayList<>();
        for (int i = 0; i < array.size(); i++) {
            String param = "messages[" + i + "]";
            if (!(array.get(i) instanceof JsonObject m)) throw ApiException.invalid(param, param + " must be an object");
            JsonRequest mr = new JsonRequest(m);
            String role = mr.requiredString("role");
            if (!List.of("system", "developer", "user", "assistant", "tool").contains(role)) {
                throw ApiException.invalid(param + ".role", "Unknown role '" + role + "'");
            }
            String content = content(m.get("content"), param);
            Map<String, Object> extra = new LinkedHashMap<>();
            for (var entry : m.entrySet()) {
                if (!entry.getKey().equals("role") && !entry.getKey().equals("content")) {
                    extra.put(entry.getKey(), Json.toJava(entry.getValue()));
                }
            }
            out.add(new ChatMessage(role, content, extra));
        }
        return out;
    }

    /** A message's content: a string, or a list of parts of which only text parts are supported. */
    private static String content(JsonElement c, String param) {
        if (c == null || c.isJsonNull()) return "";
        if (c instanceof JsonPrimitive p && p.isString()) return p.getAsString();
        if (c instanceof JsonArray parts) {
            StringBuilder sb = new StringBuilder();
            for (JsonElement part : parts) {
                if (!(part instanceof JsonObject o) || !o.has("type") || !"text".equals(o.get("type").getAsString())
                        || !(o.get("text") instanceof JsonPrimitive t) || !t.isString()) {
                    throw ApiException.invalid(param + ".content", "Only text content parts are supported");
                }
                sb.append(t.getAsString());
            }
            return sb.toString();
        }
        throw ApiException.invalid(param + ".content", "'content' must be a string or a list of text parts");
    }

    private static List<Prompt> prompts(JsonRequest r, ServedModel model) {
        JsonElement raw = r.raw("prompt");
        if (raw == null) throw ApiException.invalid("prompt", "'prompt' is required");
        boolean addSpecial = r.bool("add_special_tokens", true);
        int vocab = vocab(model);
        List<Prompt> out = new ArrayList<>();
        if (raw instanceof JsonPrimitive p && p.isString()) {
            out.add(textPrompt(p.getAsString(), model, addSpecial));
        } else if (raw instanceof JsonArray a && !a.isEmpty()) {
            JsonElement first = a.get(0);
            if (first instanceof JsonPrimitive fp && fp.isNumber()) {
                out.add(idPrompt(JsonRequest.toInts(a, "prompt", 0, vocab - 1), model));
            } else if (first instanceof JsonPrimitive fp && fp.isString()) {
                for (JsonElement e : a) {
                    if (!(e instanceof JsonPrimitive s && s.isString())) throw ApiException.invalid("prompt", "'prompt' mixes strings and other values");
                    out.add(textPrompt(s.getAsString(), model, addSpecial));
                }
            } else if (first instanceof JsonArray) {
                for (JsonElement e : a) {
                    if (!(e instanceof JsonArray ids) || ids.isEmpty()) throw ApiException.invalid("prompt", "'prompt' must be a list of non-empty token id lists");
                    out.add(idPrompt(JsonRequest.toInts(ids, "prompt", 0, vocab - 1), model));
                }
            } else {
                throw ApiException.invalid("prompt", "'prompt' must be a string, a list of strings, or token ids");
            }
        } else {
            throw ApiException.invalid("prompt", "'prompt' must be a non-empty string, list of strings, or token ids");
        }
        if (out.size() > 64) throw ApiException.invalid("prompt", "at most 64 prompts per request");
        return out;
    }

    private static Prompt textPrompt(String text, ServedModel model, boolean addSpecial) {
        if (!model.hasTokenizer()) throw ApiException.invalid("prompt", "This model has no tokenizer: give the prompt as token ids");
        int[] tokens = model.tokenizer().encode(text, addSpecial);
        if (tokens.length == 0) throw ApiException.invalid("prompt", "The prompt is empty");
        return new Prompt(tokens, text, false);
    }

    private static Prompt idPrompt(int[] ids, ServedModel model) {
        String text;
        if (model.hasTokenizer()) {
            text = model.tokenizer().decode(ids, false);
        } else {
            StringBuilder sb = new StringBuilder();
            for (int id : ids) sb.append("token_id:").append(id);
            text = sb.toString();
        }
        return new Prompt(ids, text, false);
    }

    /** The JSON shapes of both endpoints. */
    private record Rendering(String id, String model, boolean chat, TokenStrings strings) {
        JsonObject envelope(boolean chunk) {
            JsonObject o = new JsonObject();
            o.addProperty("id", id);
            o.addProperty("object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
            o.addProperty("created", System.currentTimeMillis() / 1000);
            o.addProperty("model", model);
            return o;
        }

        JsonObject completion(JsonArray choices, JsonObject usage) {
            JsonObject o = envelope(false);
            o.add("choices", choices);
            o.add("usage", usage);
            return o;
        }

        JsonObject choice(int index, String echoed, String reasoning, String content, List<TokenLogprobs> logprobs,
                          String finish, List<TokenLogprobs> promptLogprobs, int[] promptTokens) {
            JsonObject c = new JsonObject();
            c.addProperty("index", index);
            if (chat) {
                JsonObject message = new JsonObject();
                message.addProperty("role", "assistant");
                message.addProperty("content", content);
                if (!reasoning.isEmpty()) message.addProperty("reasoning_content", reasoning);
                c.add("message", message);
                c.add("logprobs", logprobs == null ? JsonNull.INSTANCE : chatLogprobs(logprobs));
            } else {
                c.addProperty("text", echoed + content);
                c.add("logprobs", logprobs == null ? JsonNull.INSTANCE
                        : completionLogprobs(promptLogprobs, promptTokens, logprobs, echoed.length()));
            }
            c.addProperty("finish_reason", finish);
            return c;
        }

        JsonObject chunk(int index, boolean first, String echoed, ChoiceText.Delta delta, List<TokenLogprobs> logprobs,
                         String finish, List<TokenLogprobs> promptLogprobs, int[] promptTokens) {
            JsonObject o = envelope(true);
            JsonArray choices = new JsonArray();
            JsonObject c = new JsonObject();
            c.addProperty("index", index);
            if (chat) {
                JsonObject d = new JsonObject();
                if (first) d.addProperty("role", "assistant");
                if (!delta.reasoning().isEmpty()) d.addProperty("reasoning_content", delta.reasoning());
                if (!delta.content().isEmpty() || (first && delta.reasoning().isEmpty())) d.addProperty("content", delta.content());
                c.add("delta", d);
                c.add("logprobs", logprobs == null ? JsonNull.INSTANCE : chatLogprobs(logprobs));
            } else {
                c.addProperty("text", echoed + delta.content());
                boolean withLogprobs = logprobs != null || promptLogprobs != null;
                c.add("logprobs", withLogprobs ? completionLogprobs(promptLogprobs, promptTokens,
                        logprobs == null ? List.of() : logprobs, 0) : JsonNull.INSTANCE);
            }
            c.addProperty("finish_reason", finish);
            choices.add(c);
            o.add("choices", choices);
            o.add("usage", JsonNull.INSTANCE);
            return o;
        }

        JsonObject usageChunk(JsonObject usage) {
            JsonObject o = envelope(true);
            o.add("choices", new JsonArray());
            o.add("usage", usage);
            return o;
        }

        private JsonObject chatLogprobs(List<TokenLogprobs> logprobs) {
            JsonArray content = new JsonArray();
            for (TokenLogprobs lp : logprobs) content.add(strings.chatEntry(lp));
            JsonObject o = new JsonObject();
            o.add("content", content);
            return o;
        }

        /** The legacy completions format: parallel lists, top alternatives as token → logprob objects. */
        private JsonObject completionLogprobs(List<TokenLogprobs> prompt, int[] promptTokens, List<TokenLogprobs> output,
                                              int outputTextStart) {
            JsonArray tokens = new JsonArray();
            JsonArray tokenLogprobs = new JsonArray();
            JsonArray top = new JsonArray();
            JsonArray offsets = new JsonArray();
            int offset = 0;
            if (promptTokens != null && prompt != null) {
                // The first prompt token has no prediction: OpenAI reports null for it.
                tokens.add(strings.of(promptTokens[0]));
                tokenLogprobs.add(JsonNull.INSTANCE);
                top.add(JsonNull.INSTANCE);
                offsets.add(offset);
                offset += strings.of(promptTokens[0]).length();
                for (TokenLogprobs lp : prompt) offset = addLegacy(lp, tokens, tokenLogprobs, top, offsets, offset);
            } else {
                offset = outputTextStart;
            }
            for (TokenLogprobs lp : output) offset = addLegacy(lp, tokens, tokenLogprobs, top, offsets, offset);
            JsonObject o = new JsonObject();
            o.add("tokens", tokens);
            o.add("token_logprobs", tokenLogprobs);
            o.add("top_logprobs", top);
            o.add("text_offset", offsets);
            return o;
        }

        private int addLegacy(TokenLogprobs lp, JsonArray tokens, JsonArray tokenLogprobs, JsonArray top, JsonArray offsets, int offset) {
            String text = strings.of(lp.token());
            tokens.add(text);
            tokenLogprobs.add(TokenStrings.finite(lp.logprob()));
            JsonObject alternatives = new JsonObject();
            for (int k = 0; k < lp.topTokens().length; k++) {
                alternatives.addProperty(strings.of(lp.topTokens()[k]), TokenStrings.finite(lp.topLogprobs()[k]));
            }
            top.add(alternatives);
            offsets.add(offset);
            return offset + text.length();
        }
    }
}
