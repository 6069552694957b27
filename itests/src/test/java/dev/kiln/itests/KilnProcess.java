package dev.kiln.itests;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * The distribution's {@code bin/kiln serve} in its own process, as a user starts it, on a free port with a private
 * data folder; its output is collected line by line.
 */
final class KilnProcess implements AutoCloseable {
    private final Process process;
    private final BlockingQueue<String> lines = new LinkedBlockingQueue<>();
    private final List<String> seen = new ArrayList<>();
    final int port;
    /** The web console's login in every process started here. */
    static final String CONSOLE_USER = "admin";
    static final String CONSOLE_PASSWORD = "itest";

    private KilnProcess(Process process, int port) {
        this.process = process;
        this.port = port;
        follow(process, lines::add);
    }

    /** Hands each line a process prints to {@code sink}, from a virtual thread, until its output ends. */
    static void follow(Process process, java.util.function.Consumer<String> sink) {
        BufferedReader reader = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
        Thread.ofVirtual().start(() -> {
            try {
                reader.lines().forEach(sink);
            } catch (UncheckedIOException e) {
                // The process was stopped: the JDK closes its output under this reader, which ends here.
            }
        });
    }

    /** Starts {@code kiln serve ARGS} and waits until it reports that it serves. */
    static KilnProcess serve(List<String> args) throws IOException, InterruptedException {
        return serve(args, java.util.Map.of());
    }

    /** Same, with extra files (name to content) in the configuration folder, e.g. {@code dev.kiln.engine.cfg}. */
    static KilnProcess serve(List<String> args, java.util.Map<String, String> configFiles) throws IOException, InterruptedException {
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        Path data = Files.createTempDirectory("kiln-itest-data");
        Path config = Files.createTempDirectory("kiln-itest-etc");
        Files.writeString(config.resolve("kiln.properties"), "felix.webconsole.username=" + CONSOLE_USER
                + "\nfelix.webconsole.password=" + CONSOLE_PASSWORD + "\n");
        for (var file : configFiles.entrySet()) Files.writeString(config.resolve(file.getKey()), file.getValue());
        List<String> command = new ArrayList<>(List.of(KilnContainer.home().resolve("bin/kiln").toString(), "serve",
                "--port", Integer.toString(port), "--data", data.toString(), "--config", config.toString()));
        command.addAll(args);
        ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true);
        pb.environment().put("JAVA_HOME", System.getProperty("java.home"));
        KilnProcess kiln = new KilnProcess(pb.start(), port);
        kiln.await("Kiln is serving on", Duration.ofSeconds(90));
        return kiln;
    }

    String baseUrl() {
        return "http://127.0.0.1:" + port;
    }

    /** A port nothing listens on now, for options such as {@code --admin-port}. */
    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    String await(String prefix, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            String line = lines.poll(100, TimeUnit.MILLISECONDS);
            if (line == null) {
                if (!process.isAlive() && lines.isEmpty()) break;
                continue;
            }
            seen.add(line);
            if (line.startsWith(prefix)) return line;
        }
        throw new AssertionError("no line starting with '" + prefix + "'; output:\n" + String.join("\n", seen));
    }

    /** Everything the process printed so far. */
    String output() {
        lines.drainTo(seen);
        return String.join("\n", seen);
    }

    @Override
    public void close() throws InterruptedException {
        process.destroy();
        if (!process.waitFor(30, TimeUnit.SECONDS)) process.destroyForcibly();
    }
}
