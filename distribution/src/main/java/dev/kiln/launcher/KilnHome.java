package dev.kiln.launcher;

import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The installation folder: {@code bin/}, {@code lib/}, {@code bundles/}, {@code etc/}, {@code deploy/}, and
 * {@code data/} for what Kiln writes at run time (framework cache, logs, generated console credentials).
 */
record KilnHome(Path root) {
    /** The home given by the {@code kiln.home} system property, else the folder above the launcher's jar. */
    static KilnHome locate() {
        String configured = System.getProperty("kiln.home");
        if (configured != null) return new KilnHome(Path.of(configured).toAbsolutePath().normalize());
        try {
            Path jar = Path.of(KilnHome.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            return new KilnHome(jar.getParent().getParent().toAbsolutePath().normalize());
        } catch (URISyntaxException e) {
            throw new IllegalStateException("cannot locate the Kiln home folder; set -Dkiln.home", e);
        }
    }

    Path bundles() {
        return root.resolve("bundles");
    }

    Path etc() {
        return root.resolve("etc");
    }

    Path deploy() {
        return root.resolve("deploy");
    }

    /** The model Kiln ships and serves when none is named: a small DeepSeek-V3-architecture model with an MTP head. */
    Path defaultModel() {
        return root.resolve("models").resolve("default");
    }

    Path data() {
        return root.resolve("data");
    }

    /** Checks that the layout is a built distribution, with a message saying how to make one. */
    void requireLayout() {
        if (!Files.isDirectory(bundles())) {
            throw new IllegalStateException(bundles() + " does not exist: build the distribution first ("
                    + "./mvnw -DskipTests install from the source root, or run ./kiln there)");
        }
    }
}
