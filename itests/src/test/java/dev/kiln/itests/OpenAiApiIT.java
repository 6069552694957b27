package dev.kiln.itests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.core.JsonValue;
import com.openai.core.http.StreamResponse;
import com.openai.errors.BadRequestException;
import com.openai.errors.NotFoundException;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionChunk;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.chat.completions.ChatCompletionStreamOptions;
import com.openai.models.completions.Completion;
import com.openai.models.completions.CompletionCreateParams;
import dev.kiln.loader.safetensors.SafetensorsFile;
import dev.kiln.loader.safetensors.TensorValues;
import java.io.ByteArrayInputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The OpenAI-compatible API of a real {@code kiln serve} process, driven by the official OpenAI Java SDK and by raw
 * HTTP: qwen2-tiny served with a tiny byte-level BPE tokenizer (chat, streaming, logprobs, errors), and served
 * without one (token-id prompts, greedy tokens equal to the reference).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class OpenAiApiIT {
    private static final Path FIXTURES = Path.of(System.getProperty("kiln.fixtures"));
    private static final Path MODEL = FIXTURES.resolve("models/qwen2-tiny");
    private static final Path TOKENIZER = FIXTURES.resolve("tokenizers/tiny-bpe");

    private KilnProcess kiln;
    private OpenAIClient client;

    @BeforeAll
    void start() throws Exception {
        kiln = KilnProcess.serve(List.of("--model", MODEL.toString(), "--tokenizer", TOKENIZER.toString(),
                "--served-model-name", "tiny", "--max-model-len", "256"));
        client = OpenAIOkHttpClient.builder().baseUrl(kiln.baseUrl() + "/v1").apiKey("unused")
                .timeout(Duration.ofSeconds(60)).build();
        awaitModel(kiln);
    }

    @AfterAll
    void stop() throws Exception {
        if (kiln != null) kiln.close();
    }

    static void awaitModel(KilnProcess k) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (System.nanoTime() < deadline) {
            HttpResponse<String> r = raw(k, "GET", "/v1/models", null);
            if (r.statusCode() == 200 && JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonArray("data").size() > 0) return;
            Thread.sleep(100);
        }
        throw new AssertionError("the model never appeared in /v1/models:\n" + k.output());
    }

    private ChatCompletionCreateParams.Builder chat(String user) {
        return ChatCompletionCreateParams.builder().model("tiny").addUserMessage(user).maxCompletionTokens(12).temperature(0.0);
    }

    @Test
    void chatCompletionAnswersWithUsageAndIsDeterministicWhenGreedy() {
        ChatCompletion a = client.chat().completions().create(chat("Hello, how are you?").build());
        ChatCompletion b = client.chat().completions().create(chat("Hello, how are you?").build());
        assertEquals(1, a.choices().size());
        String text = visible(a);
        assertEquals(text, visible(b), "greedy chat is deterministic");
        var usage = a.usage().orElseThrow();
        assertEquals(usage.promptTokens() + usage.completionTokens(), usage.totalTokens());
        assertTrue(usage.completionTokens() >= 1 && usage.completionTokens() <= 12);
        assertTrue(List.of("stop", "length").contains(a.choices().get(0).finishReason().asString()));
    }

    /** Content plus reasoning: the tiny template opens <think>, so the output starts as reasoning. */
    private static String visible(ChatCompletion c) {
        var message = c.choices().get(0).message();
        JsonValue r = message._additionalProperties().get("reasoning_content");
        String reasoning = r == null ? "" : r.convert(String.class);
        return reasoning + "|" + message.content().orElse("");
    }

    @Test
    void streamingChatDeliversTheSameTextAndUsageLast() {
        ChatCompletion whole = client.chat().completions().create(chat("What is the capital of France?").build());
        StringBuilder streamed = new StringBuilder();
        StringBuilder reasoning = new StringBuilder();
        List<ChatCompletionChunk> chunks = new ArrayList<>();
        try (StreamResponse<ChatCompletionChunk> s = client.chat().completions().createStreaming(
                chat("What is the capital of France?")
                        .streamOptions(ChatCompletionStreamOptions.builder().includeUsage(true).build()).build())) {
            s.stream().forEach(chunk -> {
                chunks.add(chunk);
                for (var choice : chunk.choices()) {
                    choice.delta().content().ifPresent(streamed::append);
                    JsonValue r = choice.delta()._additionalProperties().get("reasoning_content");
                    if (r != null) reasoning.append(r.convert(String.class));
                }
            });
        }
        assertEquals(visible(whole), reasoning + "|" + streamed);
        ChatCompletionChunk last = chunks.getLast();
        assertTrue(last.choices().isEmpty(), "the usage chunk has no choices");
        assertEquals(whole.usage().orElseThrow().totalTokens(), last.usage().orElseThrow().totalTokens());
        assertTrue(chunks.stream().anyMatch(c -> !c.choices().isEmpty() && c.choices().get(0).finishReason().isPresent()));
    }

    @Test
    void seededSamplingIsReproducible() {
        var params = chat("Tell me about the quick brown fox").temperature(1.0).seed(7L).maxCompletionTokens(16).build();
        assertEquals(visible(client.chat().completions().create(params)), visible(client.chat().completions().create(params)));
    }

    @Test
    void completionWithEchoAndLogprobs() {
        Completion c = client.completions().create(CompletionCreateParams.builder().model("tiny")
                .prompt("The quick brown fox").maxTokens(4L).temperature(0.0).echo(true).logprobs(2L).build());
        var choice = c.choices().get(0);
        assertTrue(choice.text().startsWith("The quick brown fox"), choice.text());
        var logprobs = choice.logprobs().orElseThrow();
        int promptTokens = (int) c.usage().orElseThrow().promptTokens();
        int completionTokens = (int) c.usage().orElseThrow().completionTokens();
        assertEquals(promptTokens + completionTokens, logprobs.tokens().orElseThrow().size());
        assertEquals(String.join("", logprobs.tokens().orElseThrow()), choice.text());
        List<Double> lp = logprobs.tokenLogprobs().orElseThrow();
        for (int i = 1; i < lp.size(); i++) assertTrue(lp.get(i) <= 0, "log-probabilities are <= 0");
    }

    @Test
    void promptLogprobsOnlyWithMaxTokensZero() throws Exception {
        HttpResponse<String> r = raw(kiln, "POST", "/v1/completions",
                "{\"model\":\"tiny\",\"prompt\":\"Hello there\",\"max_tokens\":0,\"echo\":true,\"logprobs\":1}");
        assertEquals(200, r.statusCode(), r.body());
        JsonObject choice = JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonArray("choices").get(0).getAsJsonObject();
        assertEquals("Hello there", choice.get("text").getAsString());
        JsonArray lp = choice.getAsJsonObject("logprobs").getAsJsonArray("token_logprobs");
        assertTrue(lp.get(0).isJsonNull(), "the first prompt token has no prediction");
        assertTrue(lp.size() > 1);
    }

    @Test
    void errorsUseOpenAisShapeAndStatus() throws Exception {
        assertThrows(NotFoundException.class, () -> client.chat().completions().create(
                ChatCompletionCreateParams.builder().model("no-such-model").addUserMessage("hi").build()));
        BadRequestException bad = assertThrows(BadRequestException.class,
                () -> client.chat().completions().create(chat("hi").temperature(5.0).build()));
        assertEquals(400, bad.statusCode());
        assertEquals("temperature", bad.param().orElse(null));

        assertError(raw(kiln, "POST", "/v1/chat/completions", "{not json"), 400, null);
        assertError(raw(kiln, "POST", "/v1/chat/completions", "[1,2]"), 400, null);
        assertError(raw(kiln, "POST", "/v1/chat/completions", "{\"messages\":\"hi\"}"), 400, "messages");
        assertError(raw(kiln, "POST", "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":100000}"), 400, "prompt");
        assertError(raw(kiln, "POST", "/v1/completions", "{\"prompt\":[1,2,99999]}"), 400, "prompt");
        assertError(raw(kiln, "POST", "/v1/completions", "{\"prompt\":\"a\",\"n\":0}"), 400, "n");
        assertError(raw(kiln, "POST", "/v1/completions", "{\"prompt\":\"a\",\"reference\":5}"), 400, "reference");
        assertError(raw(kiln, "POST", "/v1/completions", "{\"prompt\":\"a\",\"reference\":[1,99999]}"), 400, "reference");
        assertError(raw(kiln, "GET", "/v1/chat/completions", null), 405, null);
        assertError(raw(kiln, "POST", "/v1/nothing", "{}"), 404, null);
        // An oversized body is read to its end before the 413 goes out, so the client, still sending, gets the answer
        // rather than a reset connection (which it saw now and then before): several times, and once without a
        // Content-Length (chunked), where the limit is found while reading.
        String oversized = "{\"prompt\":\"" + "a".repeat(9 << 20) + "\"}";
        for (int i = 0; i < 4; i++) assertError(raw(kiln, "POST", "/v1/completions", oversized), 413, null);
        byte[] bytes = oversized.getBytes(StandardCharsets.UTF_8);
        HttpRequest chunked = HttpRequest.newBuilder(URI.create(kiln.baseUrl() + "/v1/completions"))
                .timeout(Duration.ofSeconds(60)).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofInputStream(() -> new ByteArrayInputStream(bytes))).build();
        assertError(HttpClient.newHttpClient().send(chunked, HttpResponse.BodyHandlers.ofString()), 413, null);
    }

    /** Log-probabilities of the chosen tokens alone: chat's logprobs without top_logprobs, completions' logprobs 0. */
    @Test
    void chosenTokenLogprobsComeWithoutAlternatives() throws Exception {
        HttpResponse<String> chat = raw(kiln, "POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":"
                + "\"hi\"}],\"max_tokens\":4,\"temperature\":0,\"ignore_eos\":true,\"logprobs\":true}");
        assertEquals(200, chat.statusCode(), chat.body());
        JsonArray content = JsonParser.parseString(chat.body()).getAsJsonObject().getAsJsonArray("choices").get(0)
                .getAsJsonObject().getAsJsonObject("logprobs").getAsJsonArray("content");
        assertEquals(4, content.size(), chat.body());
        for (var entry : content) {
            assertTrue(entry.getAsJsonObject().get("logprob").getAsDouble() <= 0, chat.body());
            assertEquals(0, entry.getAsJsonObject().getAsJsonArray("top_logprobs").size(), chat.body());
        }
        HttpResponse<String> completion = raw(kiln, "POST", "/v1/completions",
                "{\"prompt\":[1,2,3],\"max_tokens\":3,\"temperature\":0,\"ignore_eos\":true,\"logprobs\":0}");
        JsonObject lp = JsonParser.parseString(completion.body()).getAsJsonObject().getAsJsonArray("choices").get(0)
                .getAsJsonObject().getAsJsonObject("logprobs");
        assertEquals(3, lp.getAsJsonArray("tokens").size(), completion.body());
        assertEquals(3, lp.getAsJsonArray("token_logprobs").size(), completion.body());
        for (var top : lp.getAsJsonArray("top_logprobs")) assertEquals(0, top.getAsJsonObject().size(), completion.body());
    }

    /**
     * JSON mode: sampled answers (the tiny model is random, so only the constraint makes them JSON) that end by
     * themselves are one JSON object; answers cut by max_tokens begin one.
     */
    @Test
    void jsonModeAnswersAreJsonObjects() throws Exception {
        int ended = 0;
        for (int seed = 0; seed < 8; seed++) {
            HttpResponse<String> r = raw(kiln, "POST", "/v1/completions", "{\"prompt\":\"Answer in JSON:\",\"max_tokens\":160,"
                    + "\"temperature\":1,\"seed\":" + seed + ",\"response_format\":{\"type\":\"json_object\"}}");
            assertEquals(200, r.statusCode(), r.body());
            JsonObject choice = JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonArray("choices").get(0).getAsJsonObject();
            String text = choice.get("text").getAsString();
            assertTrue(text.strip().startsWith("{"), "seed " + seed + ": " + text);
            if (choice.get("finish_reason").getAsString().equals("stop")) {
                ended++;
                assertTrue(strictJsonObject(text), "seed " + seed + " ended with: " + text);
            }
        }
        assertTrue(ended > 0, "no JSON answer ended within 160 tokens");
        // The official client's JSON mode on chat: the tiny template opens a reasoning block, and the JSON is what follows it.
        ChatCompletion c = client.chat().completions().create(chat("Give me an object").maxCompletionTokens(120)
                .temperature(1.0).seed(1L).responseFormat(com.openai.models.ResponseFormatJsonObject.builder().build()).build());
        String content = c.choices().get(0).message().content().orElse("");
        if (c.choices().get(0).finishReason().asString().equals("stop")) {
            assertTrue(strictJsonObject(content), "the chat answer: " + content);
        }
    }

    /** Structured output: the random tiny model's sampled answers that end follow the schema exactly. */
    @Test
    void jsonSchemaAnswersFollowTheSchema() throws Exception {
        String schema = "{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"name\",\"age\",\"kind\"],"
                + "\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"},"
                + "\"kind\":{\"enum\":[\"cat\",\"dog\"]}}}";
        int ended = 0;
        for (int seed = 0; seed < 8; seed++) {
            HttpResponse<String> r = raw(kiln, "POST", "/v1/completions", "{\"prompt\":\"A pet:\",\"max_tokens\":200,"
                    + "\"temperature\":1,\"seed\":" + seed + ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
                    + "{\"name\":\"pet\",\"strict\":true,\"schema\":" + schema + "}}}");
            assertEquals(200, r.statusCode(), r.body());
            JsonObject choice = JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonArray("choices").get(0).getAsJsonObject();
            String text = choice.get("text").getAsString();
            if (!choice.get("finish_reason").getAsString().equals("stop")) continue;
            ended++;
            assertTrue(strictJsonObject(text), "seed " + seed + ": " + text);
            JsonObject pet = JsonParser.parseString(text).getAsJsonObject();
            assertEquals(java.util.Set.of("name", "age", "kind"), pet.keySet(), text);
            assertTrue(pet.get("name").getAsJsonPrimitive().isString(), text);
            assertEquals(pet.get("age").getAsBigDecimal().toBigIntegerExact().toString(), pet.get("age").getAsString(), text);
            assertTrue(List.of("cat", "dog").contains(pet.get("kind").getAsString()), text);
        }
        assertTrue(ended > 0, "no answer ended within 200 tokens");
    }

    private static boolean strictJsonObject(String text) {
        try {
            var reader = new com.google.gson.stream.JsonReader(new java.io.StringReader(text));
            reader.setStrictness(com.google.gson.Strictness.STRICT);
            var element = new com.google.gson.Gson().getAdapter(com.google.gson.JsonElement.class).read(reader);
            return element.isJsonObject() && reader.peek() == com.google.gson.stream.JsonToken.END_DOCUMENT;
        } catch (java.io.IOException | RuntimeException e) {
            return false;
        }
    }

    /** logit_bias through the official client: +100 makes a token the only choice, -100 takes the greedy one away. */
    @Test
    void logitBiasForcesAndBansTokens() throws Exception {
        HttpResponse<String> t = raw(kiln, "POST", "/tokenize", "{\"prompt\":\"e\"}");
        int forced = JsonParser.parseString(t.body()).getAsJsonObject().getAsJsonArray("tokens").get(0).getAsInt();
        Completion c = client.completions().create(CompletionCreateParams.builder().model("tiny").prompt("The quick brown fox")
                .maxTokens(5L).temperature(1.5).seed(3L)
                .logitBias(CompletionCreateParams.LogitBias.builder().putAdditionalProperty(Integer.toString(forced), JsonValue.from(100)).build())
                .build());
        assertEquals("eeeee", c.choices().get(0).text(), "five times the forced token " + forced + " at temperature 1.5");

        String greedy = "{\"prompt\":[1,2,3],\"max_tokens\":1,\"temperature\":0,\"logprobs\":0,\"return_tokens_as_token_ids\":true";
        int best = firstTokenId(raw(kiln, "POST", "/v1/completions", greedy + "}"));
        int second = firstTokenId(raw(kiln, "POST", "/v1/completions", greedy + ",\"logit_bias\":{\"" + best + "\":-100}}"));
        assertTrue(second != best, "the banned greedy token " + best + " was chosen again");
    }

    private static int firstTokenId(HttpResponse<String> r) {
        assertEquals(200, r.statusCode(), r.body());
        String token = JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonArray("choices").get(0).getAsJsonObject()
                .getAsJsonObject("logprobs").getAsJsonArray("tokens").get(0).getAsString();
        return Integer.parseInt(token.substring("token_id:".length()));
    }

    /** What Kiln does not do and whose silent omission would change the answer is refused, naming the parameter. */
    @Test
    void unsupportedStructuredOutputAndToolCallsAreRefusedAndBadBiasesToo() throws Exception {
        String chat = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2";
        assertError(raw(kiln, "POST", "/v1/chat/completions", chat + ",\"response_format\":{\"type\":\"json_schema\","
                + "\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"anyOf\":[]}}}}}}"),
                400, "response_format");
        assertError(raw(kiln, "POST", "/v1/chat/completions", chat + ",\"response_format\":{\"type\":\"json_schema\"}}"),
                400, "response_format");
        assertError(raw(kiln, "POST", "/v1/chat/completions", chat + ",\"response_format\":{\"type\":\"json_schema\","
                + "\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":\"object\",\"properties\":1}}}}"), 400, "response_format");
        assertError(raw(kiln, "POST", "/v1/completions", "{\"prompt\":\"a\",\"guided_json\":{}}"), 400, "guided_json");
        String tools = ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}]";
        assertError(raw(kiln, "POST", "/v1/chat/completions", chat + tools + "}"), 400, "tools");
        assertError(raw(kiln, "POST", "/v1/chat/completions", chat + tools + ",\"tool_choice\":\"auto\"}"), 400, "tools");
        assertEquals(200, raw(kiln, "POST", "/v1/chat/completions", chat + tools + ",\"tool_choice\":\"none\"}").statusCode());
        assertEquals(200, raw(kiln, "POST", "/v1/chat/completions", chat + ",\"response_format\":{\"type\":\"text\"}}").statusCode());
        assertError(raw(kiln, "POST", "/v1/completions", "{\"prompt\":\"a\",\"logit_bias\":{\"x\":1}}"), 400, "logit_bias");
        assertError(raw(kiln, "POST", "/v1/completions", "{\"prompt\":\"a\",\"logit_bias\":{\"99999\":1}}"), 400, "logit_bias");
        assertError(raw(kiln, "POST", "/v1/completions", "{\"prompt\":\"a\",\"logit_bias\":{\"5\":101}}"), 400, "logit_bias");
        assertError(raw(kiln, "POST", "/v1/completions", "{\"prompt\":\"a\",\"logit_bias\":[1]}"), 400, "logit_bias");
    }

    private static void assertError(HttpResponse<String> r, int status, String param) {
        assertEquals(status, r.statusCode(), r.body());
        JsonObject error = JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonObject("error");
        assertNotNull(error, r.body());
        assertFalse(error.get("message").getAsString().isBlank());
        assertTrue(error.has("type") && error.has("param") && error.has("code"), r.body());
        if (param != null) assertEquals(param, error.get("param").getAsString(), r.body());
        assertFalse(r.body().contains("Exception"), "no Java internals reach the client: " + r.body());
    }

    @Test
    void sseFramingIsExactlyOpenAis() throws Exception {
        HttpResponse<String> r = raw(kiln, "POST", "/v1/completions",
                "{\"prompt\":\"Hello\",\"max_tokens\":3,\"temperature\":0,\"stream\":true}");
        assertEquals(200, r.statusCode());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/event-stream"));
        String[] events = r.body().split("\n\n", -1);
        assertEquals("", events[events.length - 1], "the stream ends with a blank line");
        assertEquals("data: [DONE]", events[events.length - 2]);
        for (int i = 0; i < events.length - 2; i++) {
            assertTrue(events[i].startsWith("data: {"), events[i]);
            JsonObject chunk = JsonParser.parseString(events[i].substring(6)).getAsJsonObject();
            assertEquals("text_completion", chunk.get("object").getAsString());
        }
    }

    @Test
    void tokenizeAndDetokenizeRoundTrip() throws Exception {
        HttpResponse<String> t = raw(kiln, "POST", "/tokenize", "{\"prompt\":\"Hello, how are you?\"}");
        assertEquals(200, t.statusCode(), t.body());
        JsonArray tokens = JsonParser.parseString(t.body()).getAsJsonObject().getAsJsonArray("tokens");
        HttpResponse<String> d = raw(kiln, "POST", "/detokenize", "{\"tokens\":" + tokens + "}");
        assertEquals(200, d.statusCode(), d.body());
        assertEquals("Hello, how are you?", JsonParser.parseString(d.body()).getAsJsonObject().get("prompt").getAsString());
    }

    /** Greedy completions through the API equal the reference's greedy tokens (no tokenizer: ids in, ids out). */
    @Test
    void greedyCompletionsEqualTheReferenceWithoutATokenizer() throws Exception {
        for (String fixture : List.of("qwen2-tiny", "llama3-tiny", "deepseek-v3-tiny", "deepseek-v3-tiny-fp8",
                "deepseek-v2-lite-tiny")) {
            Path dir = FIXTURES.resolve("models").resolve(fixture);
            try (KilnProcess bare = KilnProcess.serve(List.of("--model", dir.toString()));
                 SafetensorsFile reference = SafetensorsFile.open(dir.resolve("reference.safetensors"))) {
                awaitModel(bare);
                for (int i = 0; i < 2; i++) {
                    int[] prompt = TensorValues.toInts(reference.tensor("input_ids_" + i));
                    int[] greedy = TensorValues.toInts(reference.tensor("greedy_ids_" + i));
                    String body = "{\"prompt\":" + Arrays.toString(prompt) + ",\"max_tokens\":" + (greedy.length - prompt.length)
                            + ",\"temperature\":0,\"ignore_eos\":true}";
                    HttpResponse<String> r = raw(bare, "POST", "/v1/completions", body);
                    assertEquals(200, r.statusCode(), r.body());
                    String text = JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonArray("choices")
                            .get(0).getAsJsonObject().get("text").getAsString();
                    List<Integer> ids = new ArrayList<>();
                    Matcher m = Pattern.compile("token_id:(\\d+)").matcher(text);
                    while (m.find()) ids.add(Integer.parseInt(m.group(1)));
                    assertEquals(Arrays.stream(greedy, prompt.length, greedy.length).boxed().toList(), ids, fixture + " prompt " + i);
                }
            }
        }
    }

    static HttpResponse<String> raw(KilnProcess k, String method, String path, String body) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(k.baseUrl() + path)).timeout(Duration.ofSeconds(60));
        if (body != null) b.header("Content-Type", "application/json");
        b.method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
        return HttpClient.newHttpClient().send(b.build(), HttpResponse.BodyHandlers.ofString());
    }
}
