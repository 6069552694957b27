package dev.kiln.itests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.errors.UnauthorizedException;
import com.openai.models.completions.CompletionCreateParams;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Every access rule of a real {@code kiln serve} over HTTP, with API keys from the command line and from a file,
 * an admin port, allowed CORS origins and a small body limit: who gets 401 and in which shape, where the console
 * and {@code /metrics} answer and with which credentials, what CORS allows, what the body limit refuses, and the
 * Prometheus metrics scraped and parsed after real traffic.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class SecurityIT {
    private static final Path FIXTURES = Path.of(System.getProperty("kiln.fixtures"));
    private static final String KEY = "sk-itest-command-line";
    private static final String FILE_KEY = "sk-itest-from-file";
    private static final String ORIGIN = "http://app.example";
    private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    private KilnProcess kiln;
    private int adminPort;

    @BeforeAll
    void start() throws Exception {
        Path keys = Files.createTempFile("kiln-itest-keys", ".txt");
        Files.writeString(keys, "# rotated keys\n" + FILE_KEY + "\n");
        adminPort = KilnProcess.freePort();
        kiln = KilnProcess.serve(List.of("--model", FIXTURES.resolve("models/qwen2-tiny").toString(),
                "--tokenizer", FIXTURES.resolve("tokenizers/tiny-bpe").toString(), "--served-model-name", "tiny",
                "--max-model-len", "256", "--api-key", KEY, "--api-key-file", keys.toString(),
                "--admin-port", Integer.toString(adminPort), "--allowed-origins", ORIGIN, "--max-body-bytes", "4096"));
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (send("GET", api("/v1/models"), null, "Authorization", "Bearer " + KEY).body().indexOf("\"tiny\"") < 0) {
            if (System.nanoTime() > deadline) throw new AssertionError("the model never loaded:\n" + kiln.output());
            Thread.sleep(100);
        }
        // The console moves to the admin port on its own (Config Admin, the servlet whiteboard): wait until it is
        // there, asking for credentials.
        while (adminStatus("/system/console/kiln") != 401) {
            if (System.nanoTime() > deadline) throw new AssertionError("the console never reached the admin port:\n" + kiln.output());
            Thread.sleep(100);
        }
    }

    private int adminStatus(String path) throws Exception {
        try {
            return send("GET", admin(path), null).statusCode();
        } catch (java.io.IOException notListeningYet) {
            return -1;
        }
    }

    @AfterAll
    void stop() throws Exception {
        if (kiln != null) kiln.close();
    }

    private String api(String path) {
        return kiln.baseUrl() + path;
    }

    private String admin(String path) {
        return "http://127.0.0.1:" + adminPort + path;
    }

    private static HttpResponse<String> send(String method, String url, String body, String... headers) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(60))
                .method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
        if (body != null) b.header("Content-Type", "application/json");
        for (int i = 0; i < headers.length; i += 2) b.header(headers[i], headers[i + 1]);
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    private static String basic(String user, String password) {
        return "Basic " + Base64.getEncoder().encodeToString((user + ":" + password).getBytes(StandardCharsets.UTF_8));
    }

    private static JsonObject error(HttpResponse<String> r) {
        return JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonObject("error");
    }

    @Test
    void theApiRequiresOneOfTheKeysAndSaysSoInOpenAisShape() throws Exception {
        for (String[] call : new String[][] {{"GET", "/v1/models", null}, {"POST", "/v1/completions", "{\"prompt\":[1,2],\"max_tokens\":1}"},
                {"POST", "/tokenize", "{\"prompt\":\"hi\"}"}, {"POST", "/detokenize", "{\"tokens\":[1]}"}}) {
            HttpResponse<String> none = send(call[0], api(call[1]), call[2]);
            assertEquals(401, none.statusCode(), call[1]);
            assertEquals("invalid_request_error", error(none).get("type").getAsString());
            assertEquals("missing_api_key", error(none).get("code").getAsString());
            assertTrue(error(none).get("param").isJsonNull());

            HttpResponse<String> wrong = send(call[0], api(call[1]), call[2], "Authorization", "Bearer " + KEY + "x");
            assertEquals(401, wrong.statusCode(), call[1]);
            assertEquals("invalid_api_key", error(wrong).get("code").getAsString());
            assertFalse(wrong.body().contains(KEY), "the presented key is not echoed");

            assertEquals(200, send(call[0], api(call[1]), call[2], "Authorization", "Bearer " + KEY).statusCode(), call[1]);
            assertEquals(200, send(call[0], api(call[1]), call[2], "Authorization", "Bearer " + FILE_KEY).statusCode(), call[1]);
        }
        assertEquals(401, send("GET", api("/v1/models"), null, "Authorization", basic("admin", KEY)).statusCode(),
                "only Bearer carries a key");
        assertEquals(200, send("GET", api("/health"), null).statusCode(), "health stays open for load balancers");
    }

    @Test
    void theOfficialSdkAuthenticatesWithItsApiKey() {
        var good = OpenAIOkHttpClient.builder().baseUrl(api("/v1")).apiKey(FILE_KEY).timeout(Duration.ofSeconds(60)).build();
        var completion = good.completions().create(CompletionCreateParams.builder().model("tiny").prompt("Hello").maxTokens(4).build());
        assertEquals(1, completion.choices().size());
        var bad = OpenAIOkHttpClient.builder().baseUrl(api("/v1")).apiKey("sk-wrong").maxRetries(0).build();
        org.junit.jupiter.api.Assertions.assertThrows(UnauthorizedException.class, () -> bad.models().list());
    }

    @Test
    void theConsoleAndMetricsAnswerOnlyOnTheAdminPortAndNeverWithDefaultCredentials() throws Exception {
        assertEquals(404, send("GET", api("/system/console/bundles"), null,
                "Authorization", basic(KilnProcess.CONSOLE_USER, KilnProcess.CONSOLE_PASSWORD)).statusCode());
        assertEquals(404, send("GET", api("/system/console/kiln"), null).statusCode());
        assertEquals(404, send("GET", api("/metrics"), null).statusCode());

        assertEquals(401, send("GET", admin("/system/console/kiln"), null).statusCode());
        assertEquals(401, send("GET", admin("/system/console/kiln"), null, "Authorization", basic("admin", "admin")).statusCode(),
                "configuring the console for the admin port must not bring back admin/admin");
        HttpResponse<String> page = send("GET", admin("/system/console/kiln"), null,
                "Authorization", basic(KilnProcess.CONSOLE_USER, KilnProcess.CONSOLE_PASSWORD));
        assertEquals(200, page.statusCode());
        assertTrue(page.body().contains("id=\"kiln-model-id\">tiny<"), "the Kiln page shows the model");
        assertEquals(200, send("GET", admin("/metrics"), null).statusCode());
    }

    @Test
    void corsAnswersOnlyTheAllowedOrigin() throws Exception {
        HttpResponse<String> preflight = send("OPTIONS", api("/v1/chat/completions"), null, "Origin", ORIGIN,
                "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type");
        assertEquals(204, preflight.statusCode(), "a preflight needs no key");
        assertEquals(ORIGIN, preflight.headers().firstValue("Access-Control-Allow-Origin").orElse(null));
        assertTrue(preflight.headers().firstValue("Access-Control-Allow-Headers").orElse("").contains("authorization"));

        HttpResponse<String> allowed = send("GET", api("/v1/models"), null, "Origin", ORIGIN, "Authorization", "Bearer " + KEY);
        assertEquals(ORIGIN, allowed.headers().firstValue("Access-Control-Allow-Origin").orElse(null));

        HttpResponse<String> other = send("OPTIONS", api("/v1/chat/completions"), null, "Origin", "http://evil.example",
                "Access-Control-Request-Method", "POST");
        assertEquals(403, other.statusCode());
        assertNull(send("GET", api("/v1/models"), null, "Origin", "http://evil.example", "Authorization", "Bearer " + KEY)
                .headers().firstValue("Access-Control-Allow-Origin").orElse(null));
    }

    @Test
    void bodiesAboveTheLimitAreRefused() throws Exception {
        String big = "{\"model\":\"tiny\",\"prompt\":\"" + "a".repeat(5000) + "\",\"max_tokens\":1}";
        HttpResponse<String> r = send("POST", api("/v1/completions"), big, "Authorization", "Bearer " + KEY);
        assertEquals(413, r.statusCode());
        assertEquals("request_too_large", error(r).get("code").getAsString());
    }

    /** One sample line of the text format: name, labels, value. */
    private static final Pattern SAMPLE = Pattern.compile("([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{[^}]*})? (\\S+)");

    private Map<String, Double> scrape(Map<String, String> types) throws Exception {
        HttpResponse<String> r = send("GET", admin("/metrics"), null);
        assertEquals(200, r.statusCode());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/plain; version=0.0.4"));
        Map<String, Double> samples = new LinkedHashMap<>();
        for (String line : r.body().split("\n")) {
            if (line.startsWith("# TYPE ")) {
                String[] p = line.split(" ");
                types.put(p[2], p[3]);
            } else if (!line.startsWith("#") && !line.isBlank()) {
                Matcher m = SAMPLE.matcher(line);
                assertTrue(m.matches(), "malformed line: " + line);
                samples.put(m.group(1) + (m.group(2) == null ? "" : m.group(2)),
                        m.group(3).equals("+Inf") ? Double.POSITIVE_INFINITY : Double.parseDouble(m.group(3)));
            }
        }
        return samples;
    }

    private static double value(Map<String, Double> samples, String name) {
        return samples.entrySet().stream().filter(e -> e.getKey().startsWith(name + "{") && !e.getKey().contains("le="))
                .mapToDouble(Map.Entry::getValue).sum();
    }

    @Test
    void metricsAfterTrafficCountWhatTheApiServed() throws Exception {
        Map<String, String> types = new LinkedHashMap<>();
        Map<String, Double> before = scrape(types);
        int requests = 3;
        long completionTokens = 0;
        for (int i = 0; i < requests; i++) {
            HttpResponse<String> r = send("POST", api("/v1/completions"), "{\"model\":\"tiny\",\"prompt\":\"Metrics " + i
                    + "\",\"max_tokens\":6,\"ignore_eos\":true}", "Authorization", "Bearer " + KEY);
            assertEquals(200, r.statusCode(), r.body());
            completionTokens += JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonObject("usage").get("completion_tokens").getAsLong();
        }
        Map<String, Double> after = scrape(types);

        for (String family : List.of("kiln:num_requests_running", "kiln:num_requests_waiting", "kiln:kv_cache_usage_perc")) {
            assertEquals("gauge", types.get(family), family);
        }
        for (String family : List.of("kiln:prefix_cache_queries", "kiln:prefix_cache_hits", "kiln:prompt_tokens",
                "kiln:generation_tokens", "kiln:spec_decode_num_draft_tokens", "kiln:spec_decode_num_accepted_tokens",
                "kiln:request_success")) {
            assertEquals("counter", types.get(family), family);
        }
        for (String h : List.of("kiln:time_to_first_token_seconds", "kiln:inter_token_latency_seconds", "kiln:e2e_request_latency_seconds")) {
            assertEquals("histogram", types.get(h), h);
            List<Double> buckets = new ArrayList<>();
            after.forEach((k, v) -> {
                if (k.startsWith(h + "_bucket{")) buckets.add(v);
            });
            assertTrue(buckets.size() > 10, h);
            for (int i = 1; i < buckets.size(); i++) assertTrue(buckets.get(i) >= buckets.get(i - 1), h + " is cumulative");
            assertEquals(value(after, h + "_count"), buckets.getLast(), h + ": +Inf holds every observation");
        }
        assertEquals(requests, value(after, "kiln:time_to_first_token_seconds_count") - value(before, "kiln:time_to_first_token_seconds_count"));
        assertEquals(requests, value(after, "kiln:e2e_request_latency_seconds_count") - value(before, "kiln:e2e_request_latency_seconds_count"));
        assertEquals(completionTokens - requests, value(after, "kiln:inter_token_latency_seconds_count")
                - value(before, "kiln:inter_token_latency_seconds_count"), "one inter-token gap per token after the first");
        assertTrue(value(after, "kiln:time_to_first_token_seconds_sum") > value(before, "kiln:time_to_first_token_seconds_sum"));
        assertEquals(completionTokens, value(after, "kiln:generation_tokens_total") - value(before, "kiln:generation_tokens_total"));
        assertTrue(value(after, "kiln:prompt_tokens_total") > value(before, "kiln:prompt_tokens_total"));
        assertEquals(requests, after.get("kiln:request_success_total{model_name=\"tiny\",engine=\"0\",finished_reason=\"length\"}")
                - before.get("kiln:request_success_total{model_name=\"tiny\",engine=\"0\",finished_reason=\"length\"}"));
        double kv = value(after, "kiln:kv_cache_usage_perc");
        assertTrue(kv >= 0 && kv <= 1, "a fraction: " + kv);
    }
}
