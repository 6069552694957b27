package dev.kiln.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ApiKeyOptionsTest {
    @Test
    void keysFromEverySourceBecomeDigestsOnly(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("keys");
        Files.writeString(file, "# ops\nsk-file\n\n");
        String digests = ApiKeyOptions.digests(List.of("sk-option", " "), file, "sk-env");
        List<String> parts = List.of(digests.split(","));
        assertEquals(List.of(ConsoleCredentials.hash("sk-option"), ConsoleCredentials.hash("sk-env"),
                ConsoleCredentials.hash("sk-file")), parts);
        assertFalse(digests.contains("sk-"), "no clear key reaches the container's properties");
    }

    @Test
    void noKeyMeansAnOpenApi() {
        assertNull(ApiKeyOptions.digests(null, null, null));
        assertNull(ApiKeyOptions.digests(List.of(), null, ""));
    }

    @Test
    void anUnreadableOrEmptyKeyFileIsAnError(@TempDir Path dir) throws Exception {
        assertThrows(IllegalArgumentException.class, () -> ApiKeyOptions.digests(null, dir.resolve("missing"), null));
        Path empty = Files.writeString(dir.resolve("empty"), "# nothing yet\n");
        assertThrows(IllegalArgumentException.class, () -> ApiKeyOptions.digests(List.of("sk-a"), empty, null));
    }
}
