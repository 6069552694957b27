package dev.kiln.launcher;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The API keys of {@code kiln serve}: {@code --api-key} (repeatable), {@code --api-key-file} (one key per line,
 * {@code #} comments) and the environment variable {@code KILN_API_KEY}. The container receives only their
 * SHA-256 digests (framework property {@code kiln.api-keys}), so no clear key is kept in its properties, which the
 * web console displays.
 */
final class ApiKeyOptions {
    static final String ENVIRONMENT_VARIABLE = "KILN_API_KEY";
    static final String FRAMEWORK_PROPERTY = "kiln.api-keys";

    private ApiKeyOptions() {}

    /**
     * The digests of every key given, comma-separated, or null when none was.
     *
     * @throws IllegalArgumentException when the key file cannot be read or holds no key
     */
    static String digests(List<String> keys, Path file, String environment) {
        List<String> clear = new ArrayList<>();
        if (keys != null) keys.stream().map(String::strip).filter(k -> !k.isEmpty()).forEach(clear::add);
        if (environment != null && !environment.isBlank()) clear.add(environment.strip());
        if (file != null) {
            List<String> fromFile = new ArrayList<>();
            try {
                for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
                    String s = line.strip();
                    if (!s.isEmpty() && !s.startsWith("#")) fromFile.add(s);
                }
            } catch (IOException e) {
                throw new IllegalArgumentException("cannot read the API key file " + file + ": " + e.getMessage());
            }
            if (fromFile.isEmpty()) throw new IllegalArgumentException("the API key file " + file + " holds no key");
            clear.addAll(fromFile);
        }
        if (clear.isEmpty()) return null;
        return String.join(",", clear.stream().map(ConsoleCredentials::hash).toList());
    }
}
