package dev.kiln.itests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLHandshakeException;
import javax.net.ssl.TrustManagerFactory;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * {@code kiln serve --tls-keystore} with a self-signed keystore made by {@code keytool} for this test: the TLS
 * handshake succeeds for a client that trusts that certificate and fails for one that does not, plain HTTP on the
 * port gets no answer, the admin port serves TLS too, and CORS headers stay off when no origin was allowed.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class TlsIT {
    private static final Path FIXTURES = Path.of(System.getProperty("kiln.fixtures"));
    private static final String PASSWORD = "itest-keystore";

    private KilnProcess kiln;
    private Path keystore;
    private int adminPort;

    @BeforeAll
    void start() throws Exception {
        Path dir = Files.createTempDirectory("kiln-itest-tls");
        keystore = dir.resolve("kiln.p12");
        Path keytool = Path.of(System.getProperty("java.home"), "bin", "keytool");
        Process p = new ProcessBuilder(keytool.toString(), "-genkeypair", "-alias", "kiln", "-keyalg", "EC",
                "-groupname", "secp256r1", "-validity", "2", "-dname", "CN=localhost", "-ext", "SAN=ip:127.0.0.1,dns:localhost",
                "-storetype", "PKCS12", "-keystore", keystore.toString(), "-storepass", PASSWORD)
                .redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0, "keytool failed: " + out);

        adminPort = KilnProcess.freePort();
        kiln = KilnProcess.serve(List.of("--model", FIXTURES.resolve("models/qwen2-tiny").toString(),
                "--tokenizer", FIXTURES.resolve("tokenizers/tiny-bpe").toString(), "--served-model-name", "tiny",
                "--tls-keystore", keystore.toString(), "--tls-keystore-password", PASSWORD,
                "--admin-port", Integer.toString(adminPort)));
        assertTrue(kiln.output().contains("Kiln is serving on https://127.0.0.1:" + kiln.port), kiln.output());
        // "serving" means the API port answers; the admin listener and the console on it start on their own (Config
        // Admin, the servlet whiteboard): wait until the console asks for credentials.
        HttpClient client = trustingTheKeystore();
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (System.nanoTime() < deadline) {
            try {
                if (get(client, "https://127.0.0.1:" + adminPort + "/system/console/kiln").statusCode() == 401) break;
            } catch (java.io.IOException notYet) {
                // not listening yet
            }
            Thread.sleep(100);
        }
    }

    @AfterAll
    void stop() throws Exception {
        if (kiln != null) kiln.close();
    }

    private HttpClient trustingTheKeystore() throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = Files.newInputStream(keystore)) {
            ks.load(in, PASSWORD.toCharArray());
        }
        KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
        trust.load(null, null);
        trust.setCertificateEntry("kiln", ks.getCertificate("kiln"));
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext tls = SSLContext.getInstance("TLS");
        tls.init(null, tmf.getTrustManagers(), null);
        return HttpClient.newBuilder().sslContext(tls).connectTimeout(Duration.ofSeconds(5)).build();
    }

    private static HttpResponse<String> get(HttpClient client, String url, String... headers) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10));
        for (int i = 0; i < headers.length; i += 2) b.header(headers[i], headers[i + 1]);
        return client.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void theHandshakeSucceedsWithTheKeystoresCertificateAndTheApiAnswers() throws Exception {
        HttpClient client = trustingTheKeystore();
        HttpResponse<String> health = get(client, "https://127.0.0.1:" + kiln.port + "/health");
        assertEquals(200, health.statusCode());
        assertTrue(health.sslSession().isPresent());
        assertTrue(health.sslSession().get().getProtocol().startsWith("TLSv1."), health.sslSession().get().getProtocol());
        HttpResponse<String> models = get(client, "https://127.0.0.1:" + kiln.port + "/v1/models", "Origin", "http://app.example");
        assertEquals(200, models.statusCode());
        assertTrue(models.headers().firstValue("Access-Control-Allow-Origin").isEmpty(), "CORS is off by default");
        assertEquals(401, get(client, "https://127.0.0.1:" + adminPort + "/system/console/kiln").statusCode(),
                "the admin port speaks TLS as well");
    }

    @Test
    void aClientThatDoesNotTrustTheCertificateAndPlainHttpAreRefused() {
        HttpClient untrusting = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        assertThrows(SSLHandshakeException.class, () -> get(untrusting, "https://127.0.0.1:" + kiln.port + "/health"));
        assertThrows(IOException.class, () -> get(untrusting, "http://127.0.0.1:" + kiln.port + "/health"));
    }
}
