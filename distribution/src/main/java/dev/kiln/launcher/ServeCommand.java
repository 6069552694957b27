package dev.kiln.launcher;

import java.io.IOException;
import java.io.Reader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code kiln serve}: boots the whole container (feature {@code all}), waits until {@code /health} answers,
 * then serves until interrupted.
 */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = "Start Kiln's HTTP server (OpenAI-compatible API, health, web console).")
final class ServeCommand implements Callable<Integer> {
    @Option(names = "--port", defaultValue = "8000", description = "HTTP port (default: ${DEFAULT-VALUE}).")
    int port;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to bind (default: ${DEFAULT-VALUE}).")
    String host;

    @Option(names = "--model", description = "Model folder (Hugging Face layout) to serve (default: the embedded default model).")
    Path model;

    @Option(names = "--quantization", description = "Weight format to quantize to on load, e.g. fp8 (default: the checkpoint's own).")
    String quantization;

    @Option(names = "--tokenizer", description = "Folder with tokenizer.json (default: the model folder).")
    Path tokenizer;

    @Option(names = "--served-model-name", description = "Name clients use in the 'model' field (default: the model folder's name).")
    String servedModelName;

    @Option(names = "--max-model-len", description = "Longest sequence served, prompt plus output (default: the model's, bounded by the KV cache).")
    Integer maxModelLen;

    @Option(names = "--config", description = "Configuration folder watched for Config Admin files (default: the home's etc/).")
    Path config;

    @Option(names = "--deploy", description = "Folder watched for bundles to hot-deploy (default: the home's deploy/).")
    Path deploy;

    @Option(names = "--data", description = "Folder for run-time state: framework cache, logs, generated credentials (default: the home's data/).")
    Path data;

    @Option(names = "--features", split = ",", defaultValue = "all",
            description = "Features to boot, comma-separated (default: ${DEFAULT-VALUE}).")
    List<String> features;

    @Override
    public Integer call() throws Exception {
        KilnHome home = KilnHome.locate();
        if (model == null && Files.isDirectory(home.defaultModel())) model = home.defaultModel();
        Path configDir = (config != null ? config : home.etc()).toAbsolutePath().normalize();
        if (!Files.isDirectory(configDir)) {
            System.err.println("kiln: configuration folder " + configDir + " does not exist");
            return 2;
        }
        if (model != null && !Files.isDirectory(model)) {
            System.err.println("kiln: model folder " + model + " does not exist");
            return 2;
        }
        if (tokenizer != null && !Files.isDirectory(tokenizer)) {
            System.err.println("kiln: tokenizer folder " + tokenizer + " does not exist");
            return 2;
        }
        if (maxModelLen != null && maxModelLen <= 0) {
            System.err.println("kiln: --max-model-len must be positive");
            return 2;
        }
        try {
            PortCheck.requireFree(host, port);
        } catch (IllegalStateException | IllegalArgumentException e) {
            System.err.println("kiln: " + e.getMessage());
            return 2;
        }
        Path dataDir = (data != null ? data : home.data()).toAbsolutePath().normalize();
        LogFile.teeTo(dataDir.resolve("log").resolve("kiln.log"));

        Properties settings = loadProperties(configDir.resolve("kiln.properties"));
        Map<String, String> properties = new HashMap<>();
        settings.stringPropertyNames().forEach(k -> properties.put(k, settings.getProperty(k)));
        properties.put("kiln.home", home.root().toString());
        properties.put(org.osgi.framework.Constants.FRAMEWORK_STORAGE, dataDir.resolve("cache").toString());
        properties.put("org.osgi.service.http.port", Integer.toString(port));
        properties.put("org.apache.felix.http.host", host);
        Path deployDir = (deploy != null ? deploy : home.deploy()).toAbsolutePath().normalize();
        if (!Files.isDirectory(deployDir)) {
            System.err.println("kiln: deploy folder " + deployDir + " does not exist");
            return 2;
        }
        properties.put("felix.fileinstall.dir", configDir + "," + deployDir);
        properties.putIfAbsent("felix.fileinstall.noInitialDelay", "true");
        properties.putIfAbsent("felix.fileinstall.poll", "1000");
        properties.putIfAbsent("felix.fileinstall.log.level", "2");
        properties.putIfAbsent("org.apache.felix.http.jetty.virtualthreads.enable", "true");
        properties.putIfAbsent("org.apache.felix.http.jetty.sendServerHeader", "false");
        // The engine and the API read these as defaults; a dev.kiln.engine configuration overrides them.
        if (model != null) properties.put("kiln.model", model.toAbsolutePath().normalize().toString());
        if (quantization != null) properties.put("kiln.quantization", quantization);
        if (tokenizer != null) properties.put("kiln.tokenizer", tokenizer.toAbsolutePath().normalize().toString());
        if (servedModelName != null) properties.put("kiln.served-model-name", servedModelName);
        if (maxModelLen != null) properties.put("kiln.max-model-len", maxModelLen.toString());

        ConsoleCredentials console = ConsoleCredentials.resolve(settings, dataDir.resolve("webconsole.properties"));
        properties.put(ConsoleCredentials.USER_PROPERTY, console.username());
        properties.put(ConsoleCredentials.PASSWORD_PROPERTY, console.hashedPassword());
        if (console.generated() != null) {
            // Printed before the container starts so that a failed start cannot swallow it.
            System.out.println("Web console user " + console.username() + ", generated password (shown only this once): "
                    + console.generated());
            System.out.println("  Its hash is kept in " + dataDir.resolve("webconsole.properties") + "; set "
                    + ConsoleCredentials.PASSWORD_PROPERTY + " in kiln.properties to choose your own.");
        }

        long started = System.nanoTime();
        Container container = Container.start(home, features, properties);
        Runtime.getRuntime().addShutdownHook(new Thread(container::close, "kiln-shutdown"));

        String base = "http://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
        if (!awaitHealthy(URI.create(base + "/health"), Duration.ofSeconds(60))) {
            System.err.println("kiln: " + base + "/health did not answer within 60 s; see " + dataDir.resolve("log"));
            container.close();
            return 1;
        }
        System.out.printf("Kiln is serving on %s (healthy %.1f s after start)%n", base, (System.nanoTime() - started) / 1e9);
        if (model != null) System.out.println("Model: " + properties.get("kiln.model"));
        System.out.println("Web console: " + base + "/system/console (user " + console.username() + ")");
        container.awaitStop();
        return 0;
    }

    private static Properties loadProperties(Path file) throws IOException {
        Properties p = new Properties();
        if (Files.isRegularFile(file)) {
            try (Reader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
                p.load(r);
            }
        }
        return p;
    }

    private static boolean awaitHealthy(URI health, Duration timeout) throws InterruptedException {
        HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            try {
                HttpResponse<Void> r = client.send(HttpRequest.newBuilder(health).timeout(Duration.ofSeconds(2)).build(),
                        HttpResponse.BodyHandlers.discarding());
                if (r.statusCode() == 200) return true;
            } catch (IOException notYet) {
                // Jetty not listening yet
            }
            Thread.sleep(50);
        }
        return false;
    }
}
