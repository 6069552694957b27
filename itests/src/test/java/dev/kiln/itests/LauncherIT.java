package dev.kiln.itests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.loader.safetensors.SafetensorsFile;
import dev.kiln.loader.safetensors.TensorValues;
import java.io.IOException;
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
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The distribution's {@code bin/kiln} as a user runs it, in its own process: serve answers health and refuses a
 * busy port; generate prints the reference's greedy ids for the fixtures.
 */
class LauncherIT {
    private static final Path KILN = KilnContainer.home().resolve("bin/kiln");

    @Test
    void serveBecomesHealthyAndASecondServeOnTheSamePortFailsClearly(@TempDir Path config, @TempDir Path data) throws Exception {
        int port = freePort();
        Process first = start(List.of("serve", "--port", Integer.toString(port), "--config", config.toString(),
                "--data", data.toString()));
        Lines output = new Lines(first);
        try {
            String password = output.await("Web console user admin, generated password", Duration.ofSeconds(60));
            String line = output.await("Kiln is serving on", Duration.ofSeconds(60));
            assertTrue(line.contains("127.0.0.1:" + port), line);
            HttpResponse<String> health = HttpClient.newHttpClient().send(
                    HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/health")).build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(200, health.statusCode());
            assertTrue(health.body().contains("\"status\":\"ok\""), health.body());
            String generated = password.substring(password.lastIndexOf(' ') + 1);
            assertEquals(20, generated.length(), password);
            String stored = java.nio.file.Files.readString(data.resolve("webconsole.properties"));
            assertTrue(!stored.contains(generated), "only the hash of the generated password is stored");
            HttpRequest consoleRequest = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/system/console/bundles"))
                    .header("Authorization", "Basic " + java.util.Base64.getEncoder().encodeToString(
                            ("admin:" + generated).getBytes(StandardCharsets.UTF_8))).build();
            // The console registers with the HTTP whiteboard on its own, after the API answers: 404 until then.
            HttpResponse<String> console = HttpClient.newHttpClient().send(consoleRequest, HttpResponse.BodyHandlers.ofString());
            long consoleDeadline = System.nanoTime() + java.time.Duration.ofSeconds(30).toNanos();
            while (console.statusCode() == 404 && System.nanoTime() < consoleDeadline) {
                Thread.sleep(100);
                console = HttpClient.newHttpClient().send(consoleRequest, HttpResponse.BodyHandlers.ofString());
            }
            assertEquals(200, console.statusCode(), "the printed password opens the console");

            Process second = start(List.of("serve", "--port", Integer.toString(port), "--config", config.toString(),
                    "--data", data.toString()));
            assertTrue(second.waitFor(60, TimeUnit.SECONDS), "second serve must exit, not hang");
            String secondOutput = new String(second.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertEquals(2, second.exitValue(), secondOutput);
            assertTrue(secondOutput.contains("cannot listen on 127.0.0.1:" + port), secondOutput);
        } finally {
            first.destroy();
            first.waitFor(30, TimeUnit.SECONDS);
        }
    }

    @Test
    void versionAndHelp() throws Exception {
        ProcessResult version = run(List.of("--version"));
        assertEquals(0, version.exit);
        assertTrue(version.output.contains("Kiln "), version.output);
        ProcessResult help = run(List.of("--help"));
        assertEquals(0, help.exit);
        for (String command : List.of("serve", "generate", "bench", "synth")) {
            assertTrue(help.output.contains(command), "help lists " + command + ":\n" + help.output);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny"})
    void generatePrintsTheReferenceGreedyIds(String fixture) throws Exception {
        Path dir = Path.of(System.getProperty("kiln.fixtures")).resolve("models").resolve(fixture);
        for (int i = 0; i < 2; i++) {
            int[] prompt;
            int[] greedy;
            try (SafetensorsFile reference = SafetensorsFile.open(dir.resolve("reference.safetensors"))) {
                prompt = TensorValues.toInts(reference.tensor("input_ids_" + i));
                greedy = TensorValues.toInts(reference.tensor("greedy_ids_" + i));
            }
            ProcessResult r = run(List.of("generate", "--model", dir.toString(), "--prompt-ids", join(prompt),
                    "--max-tokens", Integer.toString(greedy.length - prompt.length)));
            assertEquals(0, r.exit, r.output);
            assertTrue(r.output.contains("ids: " + join(greedy) + "\n"), "expected ids " + join(greedy) + " in\n" + r.output);
        }
    }

    @Test
    void generateRefusesAMissingModelFolderInOneLine(@TempDir Path empty) throws Exception {
        ProcessResult r = run(List.of("generate", "--model", empty.resolve("nope").toString(), "--prompt-ids", "1"));
        assertNotEquals(0, r.exit);
        assertTrue(r.output.contains("does not exist"), r.output);
        assertTrue(!r.output.contains("\tat "), "no stack trace:\n" + r.output);
    }

    private record ProcessResult(int exit, String output) {}

    private static ProcessResult run(List<String> args) throws Exception {
        Process p = start(args);
        String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "kiln " + args + " did not exit");
        return new ProcessResult(p.exitValue(), output);
    }

    private static Process start(List<String> args) throws IOException {
        List<String> command = new ArrayList<>();
        command.add(KILN.toString());
        command.addAll(args);
        ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true);
        pb.environment().put("JAVA_HOME", System.getProperty("java.home"));
        return pb.start();
    }

    /** Reads a process's output line by line in the background, so a test can wait for one line, then another. */
    private static final class Lines {
        private final java.util.concurrent.BlockingQueue<String> queue = new java.util.concurrent.LinkedBlockingQueue<>();
        private final List<String> seen = new ArrayList<>();

        Lines(Process p) {
            KilnProcess.follow(p, queue::add);
        }

        String await(String prefix, Duration timeout) throws InterruptedException {
            long deadline = System.nanoTime() + timeout.toNanos();
            while (System.nanoTime() < deadline) {
                String line = queue.poll(100, TimeUnit.MILLISECONDS);
                if (line == null) continue;
                seen.add(line);
                if (line.startsWith(prefix)) return line;
            }
            throw new AssertionError("no line starting with '" + prefix + "'; output:\n" + String.join("\n", seen));
        }
    }

    private static int freePort() throws IOException {
        try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    private static String join(int[] ids) {
        return Arrays.stream(ids).mapToObj(Integer::toString).collect(Collectors.joining(","));
    }
}
