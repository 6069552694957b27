package dev.kiln.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TlsTest {
    private static Path keystore(Path dir, String password) throws Exception {
        Path file = dir.resolve("kiln.p12");
        Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "keytool").toString(),
                "-genkeypair", "-alias", "kiln", "-keyalg", "EC", "-groupname", "secp256r1", "-validity", "1",
                "-dname", "CN=localhost", "-storetype", "PKCS12", "-keystore", file.toString(), "-storepass", password)
                .redirectErrorStream(true).start();
        p.getInputStream().readAllBytes();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0, "keytool failed");
        return file;
    }

    @Test
    void theTypeFollowsTheFileNameUnlessGiven() {
        assertEquals("PKCS12", Tls.type(Path.of("a/kiln.p12"), null));
        assertEquals("JKS", Tls.type(Path.of("a/kiln.JKS"), null));
        assertEquals("JKS", Tls.type(Path.of("a/kiln.p12"), "jks"));
    }

    @Test
    void aKeystoreWithAKeyLoadsAndGivesJettysProperties(@TempDir Path dir) throws Exception {
        Path file = keystore(dir, "secret-1");
        assertNotNull(Tls.trusting(Tls.load(file, "PKCS12", "secret-1".toCharArray())));
        Map<String, String> p = Tls.frameworkProperties(file, "PKCS12", "secret-1", 8443);
        assertEquals("true", p.get("org.apache.felix.https.enable"));
        assertEquals("false", p.get("org.apache.felix.http.enable"));
        assertEquals("8443", p.get("org.osgi.service.http.port.secure"));
        assertEquals(file.toAbsolutePath().normalize().toString(), p.get("org.apache.felix.https.keystore"));
    }

    @Test
    void aWrongPasswordOrAMissingFileIsReportedInOneLine(@TempDir Path dir) throws Exception {
        Path file = keystore(dir, "secret-1");
        var wrong = assertThrows(IllegalArgumentException.class, () -> Tls.load(file, "PKCS12", "nope".toCharArray()));
        assertTrue(wrong.getMessage().contains("wrong password"), wrong.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Tls.load(dir.resolve("none.p12"), "PKCS12", null));
        Path notAKeystore = Files.writeString(dir.resolve("x.p12"), "not a keystore");
        assertThrows(IllegalArgumentException.class, () -> Tls.load(notAKeystore, "PKCS12", "x".toCharArray()));
    }
}
