package dev.kiln.itests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.Socket;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The server under hostile input and careless clients: thousands of random and mutated request bodies never get a
 * 5xx, never a Java stack trace, and leave the server healthy; a streaming client that disconnects frees its
 * sequence.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ServerRobustnessIT {
    private static final Path FIXTURES = Path.of(System.getProperty("kiln.fixtures"));
    private static final String[] SEEDS = {
        "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":2,\"temperature\":0}",
        "{\"model\":\"tiny\",\"prompt\":\"The quick brown fox\",\"max_tokens\":2,\"logprobs\":2,\"echo\":true}",
        "{\"prompt\":[1,2,3,4],\"max_tokens\":2,\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
        "{\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}],"
                + "\"max_completion_tokens\":2,\"n\":2,\"seed\":3,\"stop\":[\"a\",\"b\"],\"top_p\":0.9,\"top_k\":5,\"min_p\":0.1}",
        "{\"prompt\":[\"one\",\"two\"],\"max_tokens\":1,\"presence_penalty\":1,\"frequency_penalty\":-1,\"repetition_penalty\":1.2}",
        "{\"prompt\":\"Hello there\",\"max_tokens\":0,\"echo\":true,\"logprobs\":1}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2,\"logit_bias\":{\"5\":-100},"
                + "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\",\"schema\":{\"type\":\"object\","
                + "\"required\":[\"a\"],\"properties\":{\"a\":{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"null\"}]},"
                + "\"d\":{\"type\":\"string\",\"format\":\"date\"},\"e\":{\"enum\":[\"x\",1]}}}}}}",
    };
    private static final String[] PATHS = {"/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize"};
    private static final String[] JUNK = {"null", "true", "-1", "1e309", "\"\"", "[]", "{}", "[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]",
        "\"\\u0000\"", "99999999999999999999", "0.5", "\"tiny\"", "[1,2,3]", "{\"a\":{\"b\":[null]}}", "\"\\ud800\""};

    private KilnProcess kiln;

    @BeforeAll
    void start() throws Exception {
        kiln = KilnProcess.serve(List.of("--model", FIXTURES.resolve("models/qwen2-tiny").toString(),
                "--tokenizer", FIXTURES.resolve("tokenizers/tiny-bpe").toString(), "--served-model-name", "tiny",
                "--max-model-len", "64"));
        OpenAiApiIT.awaitModel(kiln);
    }

    @AfterAll
    void stop() throws Exception {
        if (kiln != null) kiln.close();
    }

    @Test
    void thousandsOfRandomAndMutatedBodiesNeverBreakTheServer() throws Exception {
        SplittableRandom random = new SplittableRandom(2026);
        List<String[]> requests = new ArrayList<>();
        for (int i = 0; i < 2000; i++) {
            String path = PATHS[random.nextInt(PATHS.length)];
            requests.add(new String[] {path, mutate(SEEDS[random.nextInt(SEEDS.length)], random)});
        }
        List<String> failures = new ArrayList<>();
        try (ExecutorService pool = Executors.newFixedThreadPool(8)) {
            List<Future<String>> results = new ArrayList<>();
            for (String[] r : requests) {
                results.add(pool.submit(() -> {
                    HttpResponse<String> response = OpenAiApiIT.raw(kiln, "POST", r[0], r[1]);
                    int status = response.statusCode();
                    if (status >= 500 && status != 503) return status + " for " + r[0] + " " + r[1] + " -> " + response.body();
                    if (response.body().contains("Exception") || response.body().contains("\tat ")) {
                        return "internals leaked for " + r[1] + ": " + response.body();
                    }
                    if (status >= 400) {
                        JsonObject error = JsonParser.parseString(response.body()).getAsJsonObject().getAsJsonObject("error");
                        if (error == null || !error.has("message")) return "no OpenAI error body: " + response.body();
                    }
                    return null;
                }));
            }
            for (Future<String> f : results) {
                String failure = f.get();
                if (failure != null && failures.size() < 5) failures.add(failure);
            }
        }
        assertTrue(failures.isEmpty(), String.join("\n", failures));
        HttpResponse<String> health = OpenAiApiIT.raw(kiln, "GET", "/health", null);
        assertEquals(200, health.statusCode());
        awaitIdle(kiln, Duration.ofSeconds(30));
    }

    /** A valid body with random edits: junk values swapped in, bytes flipped, truncated, or duplicated. */
    private static String mutate(String body, SplittableRandom random) {
        String s = body;
        int edits = 1 + random.nextInt(3);
        for (int e = 0; e < edits; e++) {
            switch (random.nextInt(6)) {
                case 0 -> { // replace a value after a colon with junk
                    int colon = s.indexOf(':', random.nextInt(Math.max(s.length(), 1)));
                    if (colon > 0) {
                        int end = colon + 1;
                        int depth = 0;
                        while (end < s.length()) {
                            char c = s.charAt(end);
                            if (c == '[' || c == '{') depth++;
                            if ((c == ']' || c == '}') && depth-- == 0) break;
                            if (c == ',' && depth == 0) break;
                            end++;
                        }
                        s = s.substring(0, colon + 1) + JUNK[random.nextInt(JUNK.length)] + s.substring(Math.min(end, s.length()));
                    }
                }
                case 1 -> { // flip a character
                    if (!s.isEmpty()) {
                        int i = random.nextInt(s.length());
                        s = s.substring(0, i) + (char) random.nextInt(32, 127) + s.substring(i + 1);
                    }
                }
                case 2 -> s = s.substring(0, random.nextInt(s.length() + 1)); // truncate
                case 3 -> s = s + s; // trailing garbage
                case 4 -> { // a huge number where a small one was
                    s = s.replaceFirst("\"max_tokens\":\\d+", "\"max_tokens\":" + (random.nextBoolean() ? "1000000000000" : "-5"));
                }
                default -> s = JUNK[random.nextInt(JUNK.length)]; // not an object at all
            }
        }
        return s;
    }

    @Test
    void aStreamingClientThatDisconnectsFreesItsSequence() throws Exception {
        // Its own server, without the short context, so that the request would run for seconds if not cancelled.
        try (KilnProcess server = KilnProcess.serve(List.of("--model", FIXTURES.resolve("models/qwen2-tiny").toString()))) {
            OpenAiApiIT.awaitModel(server);
            try (Socket socket = startStream(server, 4000)) {
                assertEquals(1, engine(server).get("running").getAsInt(), "the request is generating");
            } // closing the socket mid-stream is the disconnect
            awaitIdle(server, Duration.ofSeconds(30));
            // Cancelled, not run to its end: the request ended as aborted with fewer than its 4,000 tokens generated.
            String metrics = OpenAiApiIT.raw(server, "GET", "/metrics", null).body();
            long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
            while (metric(metrics, "kiln:request_success_total", "finished_reason=\"abort\"") < 1 && System.nanoTime() < deadline) {
                Thread.sleep(100); // the request's end is counted as its handler returns, maybe after the engine's
                metrics = OpenAiApiIT.raw(server, "GET", "/metrics", null).body();
            }
            assertEquals(1, metric(metrics, "kiln:request_success_total", "finished_reason=\"abort\""), metrics);
            assertEquals(0, metric(metrics, "kiln:request_success_total", "finished_reason=\"length\""), metrics);
            double generated = metric(metrics, "kiln:generation_tokens_total", "");
            assertTrue(generated < 4000, "the sequence kept generating after the disconnect: " + generated + " tokens");
        }
    }

    @Test
    void aFullQueueIsAnswered429AndTheServerRecovers() throws Exception {
        // One running sequence and one waiting place. A streaming request holds the running place for seconds while 7
        // more arrive: one may wait, the other 6 must be refused at once. Holding the place this way, rather than
        // sending 8 equal requests together, keeps the test independent of how far apart a loaded machine spreads
        // the 8 arrivals: a short request used to finish before the next arrived, and all 8 were admitted.
        String engineConfig = "max-num-seqs=1\nmax-waiting=1\n";
        try (KilnProcess server = KilnProcess.serve(List.of("--model", FIXTURES.resolve("models/qwen2-tiny").toString()),
                java.util.Map.of("dev.kiln.engine.cfg", engineConfig))) {
            OpenAiApiIT.awaitModel(server);
            // The configuration file reaches the engine asynchronously (it reloads with it). It is in force once the
            // KV cache is sized for one sequence: one context of the tiny model (4,096 tokens) in blocks of 16, where
            // the defaults' 64 sequences take 64 times as many.
            awaitEngine(server, e -> e.has("kv_blocks_total") && e.get("kv_blocks_total").getAsInt() <= 4096 / 16,
                    Duration.ofSeconds(60), "sized for the configured single sequence");
            OpenAiApiIT.awaitModel(server);
            String body = "{\"prompt\":[1,2,3],\"max_tokens\":8,\"ignore_eos\":true,\"temperature\":0}";
            List<Integer> statuses = new ArrayList<>();
            try (Socket holder = startStream(server, 4000); ExecutorService pool = Executors.newFixedThreadPool(7)) {
                List<Future<HttpResponse<String>>> responses = new ArrayList<>();
                for (int i = 0; i < 7; i++) responses.add(pool.submit(() -> OpenAiApiIT.raw(server, "POST", "/v1/completions", body)));
                // Refusals are immediate; the admitted request waits behind the holder, which lets go once the other
                // six have answered.
                long settle = System.nanoTime() + Duration.ofSeconds(30).toNanos();
                while (responses.stream().filter(f -> !f.isDone()).count() > 1 && System.nanoTime() < settle) {
                    Thread.sleep(20);
                }
                holder.close(); // the disconnect cancels the holder and frees the running place
                for (Future<HttpResponse<String>> f : responses) {
                    HttpResponse<String> r = f.get();
                    statuses.add(r.statusCode());
                    if (r.statusCode() == 429) {
                        JsonObject error = JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonObject("error");
                        assertEquals("rate_limit_error", error.get("type").getAsString(), r.body());
                    } else {
                        assertEquals(200, r.statusCode(), r.body());
                    }
                }
            }
            assertEquals(6, statuses.stream().filter(s -> s == 429).count(), "one waiting place, six refused: " + statuses);
            assertEquals(1, statuses.stream().filter(s -> s == 200).count(),
                    "the waiting request completes once the running one leaves: " + statuses);
            awaitIdle(server, Duration.ofSeconds(30));
            assertEquals(200, OpenAiApiIT.raw(server, "POST", "/v1/completions", "{\"prompt\":[1],\"max_tokens\":2}").statusCode());
        }
    }

    /**
     * Opens a streaming completion of {@code tokens} tokens on a raw socket and returns once its first event arrived,
     * so the sequence is running; closing the socket is a client disconnect.
     */
    private static Socket startStream(KilnProcess server, int tokens) throws Exception {
        String body = "{\"prompt\":[1,2,3],\"max_tokens\":" + tokens + ",\"ignore_eos\":true,\"stream\":true,\"temperature\":0}";
        Socket socket = new Socket("127.0.0.1", server.port);
        socket.setSoTimeout(30_000);
        try {
            OutputStream out = socket.getOutputStream();
            out.write(("POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    + "Content-Length: " + body.getBytes(StandardCharsets.UTF_8).length + "\r\n\r\n" + body)
                    .getBytes(StandardCharsets.UTF_8));
            out.flush();
            BufferedReader in = new BufferedReader(new InputStreamReader(socket.getInputStream(), StandardCharsets.UTF_8));
            String line = in.readLine();
            assertTrue(line != null && line.startsWith("HTTP/1.1 200"), "the stream was accepted: " + line);
            while ((line = in.readLine()) != null && !line.startsWith("data: {")) {
                // headers and chunk sizes until the first event
            }
            assertTrue(line != null, "the stream started");
            return socket;
        } catch (Exception | AssertionError e) {
            socket.close();
            throw e;
        }
    }

    /** The sum of a metric's samples whose labels contain {@code label}, from the Prometheus text format. */
    private static double metric(String metrics, String name, String label) {
        double sum = 0;
        for (String line : metrics.split("\n")) {
            if (line.startsWith(name + "{") && line.contains(label)) sum += Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
        }
        return sum;
    }

    private static JsonObject engine(KilnProcess k) throws Exception {
        return JsonParser.parseString(OpenAiApiIT.raw(k, "GET", "/health", null).body()).getAsJsonObject().getAsJsonObject("engine");
    }

    /** Every sequence has left the engine and its KV blocks are free again. */
    private static void awaitIdle(KilnProcess k, Duration timeout) throws Exception {
        awaitEngine(k, e -> e.get("running").getAsInt() == 0 && e.get("waiting").getAsInt() == 0
                && e.get("kv_blocks_used").getAsInt() == 0, timeout, "idle");
    }

    /** Polls {@code /health} until the engine's state meets the condition (an engine reloading reports none). */
    private static void awaitEngine(KilnProcess k, java.util.function.Predicate<JsonObject> condition, Duration timeout,
                                    String what) throws Exception {
        long deadline = System.nanoTime() + timeout.toNanos();
        JsonObject engine = null;
        while (System.nanoTime() < deadline) {
            engine = engine(k);
            if (engine != null && condition.test(engine)) return;
            Thread.sleep(100);
        }
        // The server's recent output says why (a configuration not read, a reload that failed): kept in the report.
        String[] lines = k.output().split("\n");
        String recent = String.join("\n", java.util.Arrays.copyOfRange(lines, Math.max(0, lines.length - 80), lines.length));
        throw new AssertionError("the engine was not " + what + " within " + timeout.toMillis() + " ms: " + engine
                + "\nthe server's last output:\n" + recent);
    }
}
