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
import java.security.KeyStore;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Callable;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.SSLContext;
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

    @Option(names = "--backend", description = "Compute backend: cpu or cuda (default: cpu; cuda needs an NVIDIA GPU and driver).")
    String backend;

    @Option(names = "--max-num-seqs", description = "Most sequences decoded together in one step (default: the engine's, 64).")
    Integer maxNumSeqs;

    @Option(names = "--kv-cache-memory", description = "Bytes of KV cache, with an optional K, M or G suffix, e.g. 8G (default: what --max-num-seqs full contexts need, at most 1G on the CPU, at most 85% of a GPU's memory less the weights and 2G).")
    String kvCacheMemory;

    @Option(names = "--kv-cache-dtype", paramLabel = "TYPE", description = "What the KV cache stores: auto (bf16 on --backend cuda, f32 on the CPU), f32, or bf16 (half the memory per token, twice the tokens in --kv-cache-memory; cuda only). Default: auto.")
    String kvCacheDtype;

    @Option(names = "--speculative", description = "Speculative proposer: mtp, draft-model or reference (default: none).")
    String speculative;

    @Option(names = "--num-speculative-tokens", description = "Draft tokens per step for --speculative (default: the engine's).")
    Integer numSpeculativeTokens;

    @Option(names = "--draft-model", description = "Draft model folder for --speculative draft-model (default: the model folder with -draft appended).")
    Path draftModel;

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

    @Option(names = "--api-key", paramLabel = "KEY",
            description = "Require this key (Authorization: Bearer KEY) on /v1/*, /tokenize and /detokenize; repeatable. "
                    + "Also taken from the environment variable " + ApiKeyOptions.ENVIRONMENT_VARIABLE + ". Other users "
                    + "can see a command line: prefer --api-key-file or the variable.")
    List<String> apiKeys;

    @Option(names = "--api-key-file", paramLabel = "FILE", description = "Require one of the keys in FILE (one per line, # comments).")
    Path apiKeyFile;

    @Option(names = "--admin-port", paramLabel = "PORT",
            description = "Serve the web console and /metrics on this port instead of the API's.")
    Integer adminPort;

    @Option(names = "--admin-host", defaultValue = "127.0.0.1", paramLabel = "HOST",
            description = "Address the admin port binds (default: ${DEFAULT-VALUE}).")
    String adminHost;

    @Option(names = "--allowed-origins", split = ",", paramLabel = "ORIGIN",
            description = "Origins browsers may call the API from (CORS), comma-separated, or *; default: none (CORS off).")
    List<String> allowedOrigins;

    @Option(names = "--max-body-bytes", paramLabel = "BYTES", description = "Largest request body the API accepts (default: 8 MiB; 413 above).")
    Long maxBodyBytes;

    @Option(names = "--tls-keystore", paramLabel = "FILE",
            description = "Serve HTTPS (only) with the key and certificate in this PKCS12 or JKS keystore.")
    Path tlsKeystore;

    @Option(names = "--tls-keystore-password", paramLabel = "PASSWORD", defaultValue = "${env:KILN_TLS_KEYSTORE_PASSWORD}",
            description = "The keystore's password (default: the environment variable KILN_TLS_KEYSTORE_PASSWORD).")
    String tlsKeystorePassword;

    @Option(names = "--tls-keystore-type", paramLabel = "TYPE", description = "PKCS12 or JKS (default: from the file name, else PKCS12).")
    String tlsKeystoreType;

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
        if (backend != null && !backend.matches("[A-Za-z0-9_.-]+")) {
            System.err.println("kiln: --backend must be a backend name such as cpu or cuda");
            return 2;
        }
        if (maxNumSeqs != null && maxNumSeqs <= 0) {
            System.err.println("kiln: --max-num-seqs must be positive");
            return 2;
        }
        Long kvBytes = null;
        if (kvCacheMemory != null) {
            kvBytes = parseBytes(kvCacheMemory);
            if (kvBytes == null || kvBytes <= 0) {
                System.err.println("kiln: --kv-cache-memory must be a positive number of bytes, e.g. 8G or 512M");
                return 2;
            }
        }
        String cacheType = null;
        if (kvCacheDtype != null) {
            cacheType = kvCacheDtype(kvCacheDtype);
            if (cacheType == null) {
                System.err.println("kiln: --kv-cache-dtype must be auto, f32 or bf16");
                return 2;
            }
        }
        if (maxBodyBytes != null && maxBodyBytes <= 0) {
            System.err.println("kiln: --max-body-bytes must be positive");
            return 2;
        }
        if (adminPort != null && adminPort == port) {
            System.err.println("kiln: --admin-port must differ from --port");
            return 2;
        }
        String apiKeyDigests;
        KeyStore keystore = null;
        String keystoreType = null;
        try {
            PortCheck.requireFree(host, port);
            if (adminPort != null) PortCheck.requireFree(adminHost, adminPort);
            apiKeyDigests = ApiKeyOptions.digests(apiKeys, apiKeyFile, System.getenv(ApiKeyOptions.ENVIRONMENT_VARIABLE));
            if (tlsKeystore != null) {
                keystoreType = Tls.type(tlsKeystore, tlsKeystoreType);
                keystore = Tls.load(tlsKeystore, keystoreType, tlsKeystorePassword == null ? null : tlsKeystorePassword.toCharArray());
            }
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
        if (keystore != null) {
            properties.putAll(Tls.frameworkProperties(tlsKeystore, keystoreType,
                    tlsKeystorePassword == null ? "" : tlsKeystorePassword, port));
        }
        if (adminPort != null) {
            properties.put("kiln.admin.port", adminPort.toString());
            properties.put("kiln.admin.host", adminHost);
        }
        if (apiKeyDigests != null) properties.put(ApiKeyOptions.FRAMEWORK_PROPERTY, apiKeyDigests);
        if (allowedOrigins != null && !allowedOrigins.isEmpty()) properties.put("kiln.allowed-origins", String.join(",", allowedOrigins));
        if (maxBodyBytes != null) properties.put("kiln.max-body-bytes", maxBodyBytes.toString());
        Path deployDir = (deploy != null ? deploy : home.deploy()).toAbsolutePath().normalize();
        if (!Files.isDirectory(deployDir)) {
            System.err.println("kiln: deploy folder " + deployDir + " does not exist");
            return 2;
        }
        properties.put("felix.fileinstall.dir", configDir + "," + deployDir);
        properties.putIfAbsent("felix.fileinstall.noInitialDelay", "true");
        properties.putIfAbsent("felix.fileinstall.poll", "1000");
        properties.putIfAbsent("felix.fileinstall.log.level", "2");
        // The kiln-config-files bundle writes runtime changes back to etc/*.cfg; File Install's own write-back
        // rewrites files in place while its watcher may read them, which once left an operator's file empty.
        properties.put("felix.fileinstall.enableConfigSave", "false");
        properties.putIfAbsent("org.apache.felix.http.jetty.virtualthreads.enable", "true");
        properties.putIfAbsent("org.apache.felix.http.jetty.sendServerHeader", "false");
        // The engine and the API read these as defaults; a dev.kiln.engine configuration overrides them.
        if (model != null) properties.put("kiln.model", model.toAbsolutePath().normalize().toString());
        if (quantization != null) properties.put("kiln.quantization", quantization);
        if (speculative != null) properties.put("kiln.speculative", speculative);
        if (numSpeculativeTokens != null) properties.put("kiln.num-speculative-tokens", numSpeculativeTokens.toString());
        if (draftModel != null) properties.put("kiln.draft-model", draftModel.toAbsolutePath().normalize().toString());
        if (tokenizer != null) properties.put("kiln.tokenizer", tokenizer.toAbsolutePath().normalize().toString());
        if (servedModelName != null) properties.put("kiln.served-model-name", servedModelName);
        if (maxModelLen != null) properties.put("kiln.max-model-len", maxModelLen.toString());
        if (backend != null) properties.put("kiln.backend", backend);
        if (maxNumSeqs != null) properties.put("kiln.max-num-seqs", maxNumSeqs.toString());
        if (kvBytes != null) properties.put("kiln.kv-cache-memory", kvBytes.toString());
        if (cacheType != null) properties.put("kiln.kv-cache-dtype", cacheType);

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

        String scheme = keystore != null ? "https" : "http";
        String base = scheme + "://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
        String adminBase = adminPort == null ? base
                : scheme + "://" + (adminHost.contains(":") ? "[" + adminHost + "]" : adminHost) + ":" + adminPort;
        if (!awaitHealthy(URI.create(base + "/health"), Duration.ofSeconds(60), keystore == null ? null : Tls.trusting(keystore))) {
            System.err.println("kiln: " + base + "/health did not answer within 60 s; see " + dataDir.resolve("log"));
            container.close();
            return 1;
        }
        System.out.printf("Kiln is serving on %s (healthy %.1f s after start)%n", base, (System.nanoTime() - started) / 1e9);
        if (model != null) System.out.println("Model: " + properties.get("kiln.model"));
        System.out.println("Web console: " + adminBase + "/system/console (user " + console.username() + ")");
        System.out.println("Metrics: " + adminBase + "/metrics");
        if (apiKeyDigests != null) System.out.println("API keys: required on /v1/*, /tokenize and /detokenize");
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

    /**
     * Polls {@code /health} until it answers 200. Over TLS the probe trusts only the configured keystore's
     * certificates and skips the host name check: it connects to the address Kiln itself bound, which the
     * certificate (issued for the public name) need not name.
     */
    private static boolean awaitHealthy(URI health, Duration timeout, SSLContext tls) throws InterruptedException {
        HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            try {
                if (tls == null) {
                    HttpResponse<Void> r = client.send(HttpRequest.newBuilder(health).timeout(Duration.ofSeconds(2)).build(),
                            HttpResponse.BodyHandlers.discarding());
                    if (r.statusCode() == 200) return true;
                } else {
                    HttpsURLConnection c = (HttpsURLConnection) health.toURL().openConnection();
                    c.setSSLSocketFactory(tls.getSocketFactory());
                    c.setHostnameVerifier((name, session) -> true);
                    c.setConnectTimeout(2000);
                    c.setReadTimeout(2000);
                    try {
                        if (c.getResponseCode() == 200) return true;
                    } finally {
                        c.disconnect();
                    }
                }
            } catch (IOException notYet) {
                // Jetty not listening yet
            }
            Thread.sleep(50);
        }
        return false;
    }

    /** {@code 123}, {@code 512K}, {@code 64M}, {@code 8G} (binary multiples), or null when not a size. */
    static Long parseBytes(String text) {
        var m = java.util.regex.Pattern.compile("(\\d+)([KkMmGg]?)").matcher(text.trim());
        if (!m.matches()) return null;
        int shift = switch (m.group(2).toUpperCase()) {
            case "K" -> 10;
            case "M" -> 20;
            case "G" -> 30;
            default -> 0;
        };
        try {
            long value = Long.parseLong(m.group(1));
            return value > (Long.MAX_VALUE >> shift) ? null : value << shift;
        } catch (NumberFormatException e) {
            return null;
        }
    }

    /**
     * The engine's {@code kv-cache-dtype} value for {@code --kv-cache-dtype}: {@code auto}, {@code f32} or
     * {@code bf16} (any case), or null when it names none of them.
     */
    static String kvCacheDtype(String text) {
        String value = text.strip().toLowerCase(java.util.Locale.ROOT);
        return switch (value) {
            case "auto", "f32", "bf16" -> value;
            default -> null;
        };
    }
}
