package dev.kiln.cli;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;
import org.osgi.service.component.annotations.Component;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code kiln bench-serve}: a load generator for any OpenAI-compatible server (Kiln, vLLM, llama.cpp). It sends
 * streaming completions — random token-id prompts of a given length, or prompts from a JSONL file — at a fixed
 * concurrency or a Poisson request rate, and reports what vLLM's {@code bench serve} reports: request throughput,
 * output tokens per second, time to first token (TTFT), time per output token after the first (TPOT) and
 * inter-token latency (ITL), as mean, median and p99.
 */
@Component(service = Function.class, property = CommandJob.COMMAND + "=bench-serve")
public final class BenchServeJob extends CommandJob {
    @Override
    protected Object newCommand() {
        return new BenchServe();
    }

    /** What one request measured. */
    record Sample(boolean ok, String error, int outputTokens, double ttft, double e2e, List<Double> itl) {}

    @Command(name = "bench-serve", mixinStandardHelpOptions = true,
            description = "Load-test an OpenAI-compatible server; reports throughput, TTFT, TPOT and ITL.")
    static final class BenchServe implements Callable<Integer> {
        @Option(names = "--base-url", defaultValue = "http://127.0.0.1:8000", description = "Server URL (default: ${DEFAULT-VALUE}).")
        String baseUrl;

        @Option(names = "--model", description = "Model name to send (default: the first of /v1/models).")
        String model;

        @Option(names = "--input-len", defaultValue = "128", description = "Random prompt length in tokens (default: ${DEFAULT-VALUE}).")
        int inputLen;

        @Option(names = "--output-len", defaultValue = "128", description = "Tokens to generate per request (default: ${DEFAULT-VALUE}).")
        int outputLen;

        @Option(names = "--vocab", defaultValue = "1000", description = "Random prompt ids are drawn below this (default: ${DEFAULT-VALUE}).")
        int vocab;

        @Option(names = "--dataset", description = "JSONL file with a \"prompt\" (string or token ids) per line instead of random prompts.")
        Path dataset;

        @Option(names = "--num-prompts", defaultValue = "32", description = "Requests to send (default: ${DEFAULT-VALUE}).")
        int numPrompts;

        @Option(names = "--concurrency", defaultValue = "1", description = "Requests in flight at most (default: ${DEFAULT-VALUE}).")
        int concurrency;

        @Option(names = "--request-rate", description = "Poisson arrivals per second instead of a closed loop.")
        Double requestRate;

        @Option(names = "--seed", defaultValue = "0", description = "Random seed (default: ${DEFAULT-VALUE}).")
        long seed;

        @Option(names = "--result-file", description = "Write the results as JSON here.")
        Path resultFile;

        @Option(names = "--temperature", defaultValue = "0", description = "Sampling temperature sent with every request (default: ${DEFAULT-VALUE}, greedy).")
        double temperature;

        @Option(names = "--top-p", defaultValue = "1", description = "top_p sent with every request (default: ${DEFAULT-VALUE}).")
        double topP;

        @Override
        public Integer call() throws Exception {
            if (numPrompts < 1 || concurrency < 1 || inputLen < 1 || outputLen < 1) {
                throw new IllegalArgumentException("--num-prompts, --concurrency, --input-len and --output-len must be >= 1");
            }
            if (!(temperature >= 0) || !(topP > 0 && topP <= 1)) {
                throw new IllegalArgumentException("--temperature must be >= 0 and --top-p in (0, 1]");
            }
            HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
            if (model == null) model = firstModel(http);
            List<JsonElement> prompts = prompts();
            SplittableRandom arrivals = new SplittableRandom(seed + 1);
            Semaphore slots = new Semaphore(concurrency);
            AtomicInteger done = new AtomicInteger();
            List<Future<Sample>> futures = new ArrayList<>();
            long start = System.nanoTime();
            try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
                for (int i = 0; i < numPrompts; i++) {
                    if (requestRate != null && i > 0) {
                        Thread.sleep((long) (-Math.log(1 - arrivals.nextDouble()) / requestRate * 1000));
                    }
                    slots.acquire();
                    JsonElement prompt = prompts.get(i % prompts.size());
                    futures.add(pool.submit(() -> {
                        try {
                            return send(http, prompt);
                        } finally {
                            slots.release();
                            progress(done.incrementAndGet());
                        }
                    }));
                }
                List<Sample> samples = new ArrayList<>();
                for (Future<Sample> f : futures) samples.add(f.get());
                double seconds = (System.nanoTime() - start) / 1e9;
                System.err.println();
                report(samples, seconds);
            }
            return 0;
        }

        private void progress(int done) {
            int width = 40;
            int filled = done * width / numPrompts;
            System.err.printf("\r[%s%s] %d/%d", "#".repeat(filled), " ".repeat(width - filled), done, numPrompts);
        }

        private String firstModel(HttpClient http) throws IOException, InterruptedException {
            HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(baseUrl + "/v1/models")).build(),
                    HttpResponse.BodyHandlers.ofString());
            if (r.statusCode() != 200) throw new IllegalStateException(baseUrl + "/v1/models answered " + r.statusCode());
            JsonArray data = JsonParser.parseString(r.body()).getAsJsonObject().getAsJsonArray("data");
            if (data.isEmpty()) throw new IllegalStateException(baseUrl + " serves no model");
            return data.get(0).getAsJsonObject().get("id").getAsString();
        }

        private List<JsonElement> prompts() throws IOException {
            List<JsonElement> out = new ArrayList<>();
            if (dataset != null) {
                for (String line : Files.readAllLines(dataset, StandardCharsets.UTF_8)) {
                    if (line.isBlank()) continue;
                    JsonObject o = JsonParser.parseString(line).getAsJsonObject();
                    if (!o.has("prompt")) throw new IllegalArgumentException(dataset + ": a line has no \"prompt\"");
                    out.add(o.get("prompt"));
                }
                if (out.isEmpty()) throw new IllegalArgumentException(dataset + " holds no prompts");
                return out;
            }
            SplittableRandom random = new SplittableRandom(seed);
            for (int i = 0; i < numPrompts; i++) {
                JsonArray ids = new JsonArray();
                random.ints(inputLen, 1, vocab).forEach(ids::add);
                out.add(ids);
            }
            return out;
        }

        private Sample send(HttpClient http, JsonElement prompt) {
            JsonObject body = new JsonObject();
            body.addProperty("model", model);
            body.add("prompt", prompt);
            body.addProperty("max_tokens", outputLen);
            body.addProperty("temperature", temperature);
            if (topP < 1) body.addProperty("top_p", topP);
            body.addProperty("ignore_eos", true);
            body.addProperty("stream", true);
            JsonObject options = new JsonObject();
            options.addProperty("include_usage", true);
            body.add("stream_options", options);
            HttpRequest request = HttpRequest.newBuilder(URI.create(baseUrl + "/v1/completions"))
                    .header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString(body.toString())).build();
            long t0 = System.nanoTime();
            try {
                HttpResponse<InputStream> r = http.send(request, HttpResponse.BodyHandlers.ofInputStream());
                if (r.statusCode() != 200) {
                    String error = new String(r.body().readAllBytes(), StandardCharsets.UTF_8);
                    return new Sample(false, r.statusCode() + " " + error, 0, 0, 0, List.of());
                }
                double ttft = -1;
                long last = t0;
                int chunks = 0;
                int usageTokens = -1;
                List<Double> itl = new ArrayList<>();
                try (BufferedReader reader = new BufferedReader(new InputStreamReader(r.body(), StandardCharsets.UTF_8))) {
                    for (String line; (line = reader.readLine()) != null; ) {
                        if (!line.startsWith("data: ") || line.equals("data: [DONE]")) continue;
                        JsonObject chunk = JsonParser.parseString(line.substring(6)).getAsJsonObject();
                        if (chunk.has("usage") && chunk.get("usage").isJsonObject()) {
                            usageTokens = chunk.getAsJsonObject("usage").get("completion_tokens").getAsInt();
                        }
                        JsonArray choices = chunk.getAsJsonArray("choices");
                        if (choices == null || choices.isEmpty()) continue;
                        long now = System.nanoTime();
                        if (ttft < 0) ttft = (now - t0) / 1e9;
                        else itl.add((now - last) / 1e9);
                        last = now;
                        chunks++;
                    }
                }
                double e2e = (System.nanoTime() - t0) / 1e9;
                return new Sample(true, null, usageTokens >= 0 ? usageTokens : chunks, ttft, e2e, itl);
            } catch (IOException | InterruptedException | RuntimeException e) {
                return new Sample(false, e.toString(), 0, 0, 0, List.of());
            }
        }

        private void report(List<Sample> samples, double seconds) throws IOException {
            List<Sample> ok = samples.stream().filter(Sample::ok).toList();
            long output = ok.stream().mapToLong(Sample::outputTokens).sum();
            double[] ttft = ok.stream().mapToDouble(s -> s.ttft() * 1000).toArray();
            double[] tpot = ok.stream().filter(s -> s.outputTokens() > 1)
                    .mapToDouble(s -> (s.e2e() - s.ttft()) / (s.outputTokens() - 1) * 1000).toArray();
            double[] itl = ok.stream().flatMap(s -> s.itl().stream()).mapToDouble(d -> d * 1000).toArray();
            double[] e2e = ok.stream().mapToDouble(s -> s.e2e() * 1000).toArray();
            Map<String, Object> result = new LinkedHashMap<>();
            result.put("base_url", baseUrl);
            result.put("model", model);
            result.put("concurrency", concurrency);
            result.put("request_rate", requestRate);
            result.put("input_len", dataset == null ? inputLen : null);
            result.put("output_len", outputLen);
            result.put("completed", ok.size());
            result.put("failed", samples.size() - ok.size());
            result.put("duration_s", seconds);
            result.put("request_throughput", ok.size() / seconds);
            result.put("output_throughput", output / seconds);
            result.put("ttft_ms", stats(ttft));
            result.put("tpot_ms", stats(tpot));
            result.put("itl_ms", stats(itl));
            result.put("e2el_ms", stats(e2e));
            System.out.printf("Successful requests: %d (failed %d)%n", ok.size(), samples.size() - ok.size());
            samples.stream().filter(s -> !s.ok()).limit(3).forEach(s -> System.out.println("  failure: " + s.error()));
            System.out.printf("Duration: %.2f s%n", seconds);
            System.out.printf("Request throughput: %.2f req/s%n", ok.size() / seconds);
            System.out.printf("Output token throughput: %.2f tok/s%n", output / seconds);
            line("TTFT", ttft);
            line("TPOT", tpot);
            line("ITL", itl);
            line("E2E latency", e2e);
            if (resultFile != null) {
                Files.writeString(resultFile, new GsonBuilder().setPrettyPrinting().serializeNulls().create().toJson(result));
                System.out.println("Results written to " + resultFile);
            }
        }

        private static void line(String name, double[] values) {
            Map<String, Double> s = stats(values);
            System.out.printf("%-12s mean %.2f ms, median %.2f ms, p99 %.2f ms%n", name, s.get("mean"), s.get("median"), s.get("p99"));
        }

        static Map<String, Double> stats(double[] values) {
            Map<String, Double> out = new LinkedHashMap<>();
            if (values.length == 0) {
                out.put("mean", Double.NaN);
                out.put("median", Double.NaN);
                out.put("p99", Double.NaN);
                return out;
            }
            double[] sorted = values.clone();
            Arrays.sort(sorted);
            out.put("mean", Arrays.stream(sorted).average().orElse(Double.NaN));
            out.put("median", percentile(sorted, 50));
            out.put("p99", percentile(sorted, 99));
            return out;
        }

        /** Linear interpolation between closest ranks, as numpy's default percentile. */
        static double percentile(double[] sorted, double p) {
            double rank = p / 100 * (sorted.length - 1);
            int lo = (int) Math.floor(rank);
            int hi = Math.min(lo + 1, sorted.length - 1);
            return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
        }
    }
}
