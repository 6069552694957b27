package dev.kiln.launcher;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.util.Collections;
import java.util.Locale;
import java.util.Map;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/**
 * TLS for {@code kiln serve --tls-keystore}: checks the keystore before the container starts (a wrong password or
 * a keystore without a key is reported in one line instead of a Jetty stack trace), turns it into the framework
 * properties Felix HTTP's Jetty reads, and gives the launcher's own health probe an SSL context that trusts exactly
 * the keystore's certificates.
 */
final class Tls {
    private Tls() {}

    /** The keystore type for the file: the given one, else {@code JKS} for {@code .jks} files, else {@code PKCS12}. */
    static String type(Path keystore, String given) {
        if (given != null && !given.isBlank()) return given.strip().toUpperCase(Locale.ROOT);
        return keystore.getFileName().toString().toLowerCase(Locale.ROOT).endsWith(".jks") ? "JKS" : "PKCS12";
    }

    /**
     * Opens the keystore and requires a private key in it.
     *
     * @throws IllegalArgumentException with a message for the user
     */
    static KeyStore load(Path keystore, String type, char[] password) {
        if (!Files.isRegularFile(keystore)) throw new IllegalArgumentException("TLS keystore " + keystore + " does not exist");
        try (InputStream in = Files.newInputStream(keystore)) {
            KeyStore ks = KeyStore.getInstance(type);
            ks.load(in, password);
            for (String alias : Collections.list(ks.aliases())) {
                if (ks.isKeyEntry(alias)) return ks;
            }
            throw new IllegalArgumentException("TLS keystore " + keystore + " holds no private key");
        } catch (IOException | GeneralSecurityException e) {
            throw new IllegalArgumentException("cannot open the TLS keystore " + keystore + " as " + type
                    + " (wrong password or type?): " + e.getMessage());
        }
    }

    /** Framework properties for Felix HTTP: HTTPS only, on {@code port}, with the keystore. */
    static Map<String, String> frameworkProperties(Path keystore, String type, String password, int port) {
        return Map.of(
                "org.apache.felix.https.enable", "true",
                "org.apache.felix.http.enable", "false",
                "org.osgi.service.http.port.secure", Integer.toString(port),
                "org.apache.felix.https.keystore", keystore.toAbsolutePath().normalize().toString(),
                "org.apache.felix.https.keystore.type", type,
                "org.apache.felix.https.keystore.password", password,
                "org.apache.felix.https.keystore.key.password", password);
    }

    /** An SSL context that trusts the certificates of the keystore's entries and nothing else. */
    static SSLContext trusting(KeyStore keystore) {
        try {
            KeyStore trusted = KeyStore.getInstance(KeyStore.getDefaultType());
            trusted.load(null, null);
            int n = 0;
            for (String alias : Collections.list(keystore.aliases())) {
                Certificate cert = keystore.getCertificate(alias);
                if (cert != null) trusted.setCertificateEntry("kiln-" + n++, cert);
            }
            TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            tmf.init(trusted);
            SSLContext context = SSLContext.getInstance("TLS");
            context.init(null, tmf.getTrustManagers(), null);
            return context;
        } catch (IOException | GeneralSecurityException e) {
            throw new IllegalStateException("cannot build a trust store from the TLS keystore: " + e.getMessage(), e);
        }
    }
}
