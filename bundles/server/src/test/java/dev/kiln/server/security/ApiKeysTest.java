package dev.kiln.server.security;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ApiKeysTest {
    @Test
    void clearAndDigestFormsMatchTheSameKeyAndNothingElse() {
        ApiKeys keys = ApiKeys.of(List.of("sk-first", ApiKeys.digestSpec("sk-second")));
        assertTrue(keys.required());
        assertTrue(keys.matches("sk-first"));
        assertTrue(keys.matches("sk-second"));
        assertFalse(keys.matches("sk-firs"));
        assertFalse(keys.matches("sk-first "));
        assertFalse(keys.matches(""));
        assertFalse(keys.matches(null));
        assertFalse(keys.matches(ApiKeys.digestSpec("sk-second")), "the digest itself is not a key");
    }

    @Test
    void noKeysMeansNoneRequired() {
        assertFalse(ApiKeys.of(List.of("", "  ")).required());
    }

    @Test
    void aMalformedDigestIsRefusedWithoutEchoingIt() {
        var e = assertThrows(IllegalArgumentException.class, () -> ApiKeys.of(List.of("{sha-256}not*base64")));
        assertFalse(e.getMessage().contains("not*base64"));
        assertThrows(IllegalArgumentException.class, () -> ApiKeys.of(List.of("{sha-256}AAAA")));
    }

    @Test
    void bearerTokensAreTakenFromTheAuthorizationHeader() {
        assertEquals(Optional.of("k1"), ApiKeys.bearerToken("Bearer k1"));
        assertEquals(Optional.of("k1"), ApiKeys.bearerToken("bearer   k1 "));
        assertEquals(Optional.empty(), ApiKeys.bearerToken("Basic YWRtaW46YWRtaW4="));
        assertEquals(Optional.empty(), ApiKeys.bearerToken("Bearer "));
        assertEquals(Optional.empty(), ApiKeys.bearerToken(null));
    }

    @Test
    void keyFilesHoldOneKeyPerLineWithComments(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("keys");
        Files.writeString(file, "# rotated monthly\nsk-a\n\n  sk-b  \n");
        assertEquals(List.of("sk-a", "sk-b"), ApiKeys.readFile(file));
    }
}
