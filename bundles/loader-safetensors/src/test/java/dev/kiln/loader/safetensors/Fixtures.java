package dev.kiln.loader.safetensors;

import static org.junit.jupiter.api.Assertions.assertFalse;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import java.util.stream.Stream;

/** The shared reference checkpoints, found through the {@code kiln.fixtures} system property. */
final class Fixtures {
    private Fixtures() {}

    static Path root() {
        String root = Objects.requireNonNull(System.getProperty("kiln.fixtures"),
                "system property kiln.fixtures must name the fixtures folder");
        return Path.of(root);
    }

    /** Every model folder, sorted by name. */
    static List<Path> models() throws IOException {
        try (Stream<Path> folders = Files.list(root().resolve("models"))) {
            List<Path> models = folders.filter(Files::isDirectory).sorted().toList();
            assertFalse(models.isEmpty(), "no fixtures under " + root());
            return models;
        }
    }

    static Path model(String name) {
        return root().resolve("models").resolve(name);
    }
}
