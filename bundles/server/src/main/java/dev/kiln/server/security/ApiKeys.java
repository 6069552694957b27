package dev.kiln.server.security;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Optional;

/**
 * The API keys a client may present, held only as SHA-256 digests. A presented key is hashed and compared with
 * every digest in constant time, without stopping at a match, so neither the comparison nor the position of the
 * matching key leaks through timing; comparing fixed-length digests also hides the keys' lengths.
 */
final class ApiKeys {
    /** The prefix of a key given as its digest, the form the web console uses for passwords. */
    static final String SHA256_PREFIX = "{sha-256}";

    private final List<byte[]> digests;

    private ApiKeys(List<byte[]> digests) {
        this.digests = List.copyOf(digests);
    }

    /**
     * Keys from their specifications: a clear key, or {@code {sha-256}} followed by the base64 SHA-256 of one.
     *
     * @throws IllegalArgumentException naming the problem (never the key) when a digest is malformed
     */
    static ApiKeys of(Collection<String> specs) {
        List<byte[]> out = new ArrayList<>();
        for (String spec : specs) {
            String s = spec == null ? "" : spec.strip();
            if (s.isEmpty()) continue;
            if (s.regionMatches(true, 0, SHA256_PREFIX, 0, SHA256_PREFIX.length())) {
                byte[] digest;
                try {
                    digest = Base64.getDecoder().decode(s.substring(SHA256_PREFIX.length()));
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException("an API key digest is not valid base64");
                }
                if (digest.length != 32) throw new IllegalArgumentException("an API key digest is not 32 bytes long");
                out.add(digest);
            } else {
                out.add(sha256(s));
            }
        }
        return new ApiKeys(out);
    }

    /** The keys in a file: one per line; blank lines and lines starting with {@code #} are skipped. */
    static List<String> readFile(Path file) throws IOException {
        List<String> keys = new ArrayList<>();
        for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
            String s = line.strip();
            if (!s.isEmpty() && !s.startsWith("#")) keys.add(s);
        }
        return keys;
    }

    /** Whether any key is configured (without keys the API is open). */
    boolean required() {
        return !digests.isEmpty();
    }

    int size() {
        return digests.size();
    }

    /** Whether the presented key is one of the keys. */
    boolean matches(String presented) {
        if (presented == null) return false;
        byte[] candidate = sha256(presented);
        boolean match = false;
        for (byte[] digest : digests) match |= MessageDigest.isEqual(candidate, digest);
        return match;
    }

    /** The token of an {@code Authorization: Bearer TOKEN} header, if the header has that form. */
    static Optional<String> bearerToken(String authorization) {
        if (authorization == null) return Optional.empty();
        String h = authorization.strip();
        int space = h.indexOf(' ');
        if (space < 0 || !h.substring(0, space).toLowerCase(Locale.ROOT).equals("bearer")) return Optional.empty();
        String token = h.substring(space + 1).strip();
        return token.isEmpty() ? Optional.empty() : Optional.of(token);
    }

    /** The {@code {sha-256}base64} form of a clear key. */
    static String digestSpec(String clear) {
        return SHA256_PREFIX + Base64.getEncoder().encodeToString(sha256(clear));
    }

    private static byte[] sha256(String s) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every Java runtime has SHA-256", e);
        }
    }
}
