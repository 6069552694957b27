package dev.kiln.itests;

import static org.ops4j.pax.exam.CoreOptions.bundle;
import static org.ops4j.pax.exam.CoreOptions.cleanCaches;
import static org.ops4j.pax.exam.CoreOptions.composite;
import static org.ops4j.pax.exam.CoreOptions.frameworkProperty;
import static org.ops4j.pax.exam.CoreOptions.junitBundles;
import static org.ops4j.pax.exam.CoreOptions.systemProperty;

import dev.kiln.features.Features;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import org.ops4j.pax.exam.Option;

/**
 * Pax Exam options that boot the container the way the launcher does: the bundles of a feature, taken from the
 * built distribution's {@code bundles/} folder, in feature order, with the launcher's framework properties.
 */
public final class KilnContainer {
    /** Clear console password the tests configure (as its hash, like an operator would). */
    public static final String CONSOLE_USER = "operator";
    public static final String CONSOLE_PASSWORD = "correct horse battery staple";
    /** HTTP port chosen once per test JVM; the test probe reads it back from this system property. */
    public static final String PORT_PROPERTY = "kiln.itest.port";
    /** How many Kiln bundles the booted features hold, computed where the feature files are (outside the framework). */
    public static final String KILN_BUNDLES_PROPERTY = "kiln.itest.kiln-bundles";

    private KilnContainer() {}

    public static Path home() {
        return Path.of(System.getProperty("kiln.home", "../distribution/target/kiln")).toAbsolutePath().normalize();
    }

    /** The feature's bundles plus JUnit, on a free port, with generated-for-the-test console credentials. */
    public static Option feature(String feature) {
        int port = freePort();
        List<Option> options = new ArrayList<>();
        options.add(cleanCaches());
        options.add(systemProperty("pax.exam.logging").value("none"));
        options.add(systemProperty(PORT_PROPERTY).value(Integer.toString(port)));
        // Felix would otherwise load services through the test runner's classpath copies (ServiceLoader).
        options.add(frameworkProperty("felix.bootdelegation.implicit").value("false"));
        options.add(frameworkProperty("org.osgi.service.http.port").value(Integer.toString(port)));
        options.add(frameworkProperty("org.apache.felix.http.host").value("127.0.0.1"));
        options.add(frameworkProperty("felix.webconsole.username").value(CONSOLE_USER));
        options.add(frameworkProperty("felix.webconsole.password").value(sha256(CONSOLE_PASSWORD)));
        options.add(frameworkProperty("felix.fileinstall.dir").value(tempDir("kiln-itest-etc").toString()));
        options.add(frameworkProperty("felix.fileinstall.noInitialDelay").value("true"));
        options.add(frameworkProperty("felix.fileinstall.enableConfigSave").value("false"));
        options.add(junitBundles());
        List<Features.BundleRef> bundles = Features.resolve(feature);
        long kiln = bundles.stream().filter(r -> r.groupId().equals("dev.kiln")).count();
        options.add(systemProperty(KILN_BUNDLES_PROPERTY).value(Long.toString(kiln)));
        for (Features.BundleRef ref : bundles) {
            Path jar = home().resolve("bundles").resolve(ref.fileName());
            if (!Files.isRegularFile(jar)) {
                throw new IllegalStateException(jar + " missing: build the distribution before the integration tests");
            }
            // Installed in feature order; Felix starts bundles of one start level in installation order.
            options.add(bundle(jar.toUri().toString()));
        }
        return composite(options.toArray(Option[]::new));
    }

    public static int port() {
        return Integer.getInteger(PORT_PROPERTY);
    }

    static String sha256(String clear) {
        try {
            byte[] d = MessageDigest.getInstance("SHA-256").digest(clear.getBytes(StandardCharsets.UTF_8));
            return "{sha-256}" + Base64.getEncoder().encodeToString(d);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    private static int freePort() {
        try (ServerSocket s = new ServerSocket()) {
            s.bind(new InetSocketAddress("127.0.0.1", 0));
            return s.getLocalPort();
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    private static Path tempDir(String prefix) {
        try {
            return Files.createTempDirectory(prefix);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }
}
