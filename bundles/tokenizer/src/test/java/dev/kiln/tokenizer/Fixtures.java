package dev.kiln.tokenizer;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.kiln.api.tokenizer.ChatMessage;
import dev.kiln.tokenizer.hf.HfTokenizer;
import dev.kiln.tokenizer.hf.TokenizerJsonReader;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The reference tokenizers under {@code <kiln.fixtures>/tokenizers}: their folders, their reference encodings and
 * chat renderings (computed by Hugging Face {@code tokenizers} and {@code transformers}), and the loaded tokenizers,
 * read once per test run because the vocabularies are large.
 */
public final class Fixtures {
    /** The fixture tokenizers. */
    public static final List<String> NAMES = List.of("qwen3", "deepseek_v3");

    private static final Map<String, HfTokenizer> LOADED = new ConcurrentHashMap<>();

    private Fixtures() {}

    /**
     * The model folder of a fixture tokenizer. The large vocabularies are kept gzip-compressed in the repository
     * ({@code tokenizer.json.gz} with the original's SHA-256 beside it) so the working tree stays small enough to
     * travel; the first use unpacks the folder into the build directory and checks the digest, so the tests read
     * exactly the reference's bytes.
     */
    public static Path folder(String name) {
        String root = System.getProperty("kiln.fixtures");
        if (root == null) {
            throw new IllegalStateException("system property kiln.fixtures is not set");
        }
        Path stored = Path.of(root, "tokenizers", name);
        if (!Files.isRegularFile(stored.resolve("tokenizer.json.gz"))) return stored;
        return UNPACKED.computeIfAbsent(name, n -> unpack(stored, Path.of("target", "fixtures", "tokenizers", n)));
    }

    private static final Map<String, Path> UNPACKED = new ConcurrentHashMap<>();

    private static Path unpack(Path stored, Path target) {
        try {
            Files.createDirectories(target);
            try (var files = Files.list(stored)) {
                for (Path f : files.toList()) {
                    String file = f.getFileName().toString();
                    if (file.equals("tokenizer.json.gz")) {
                        try (var in = new java.util.zip.GZIPInputStream(Files.newInputStream(f))) {
                            Files.copy(in, target.resolve("tokenizer.json"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                        }
                    } else {
                        Files.copy(f, target.resolve(file), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                    }
                }
            }
            String expected = Files.readString(stored.resolve("tokenizer.json.sha256")).strip().split("\\s+")[0];
            byte[] digest = java.security.MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(target.resolve("tokenizer.json")));
            String actual = java.util.HexFormat.of().formatHex(digest);
            if (!actual.equals(expected)) {
                throw new IllegalStateException(stored + ": unpacked tokenizer.json has SHA-256 " + actual + ", expected " + expected);
            }
            return target.toAbsolutePath();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The fixture's tokenizer, loaded once. */
    public static HfTokenizer tokenizer(String name) {
        return LOADED.computeIfAbsent(name, n -> {
            try {
                return TokenizerJsonReader.read(folder(n));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
    }

    /** One encoding of the reference. */
    public record EncodingCase(String tokenizer, String text, int[] ids, String decoded) {
        @Override
        public String toString() {
            return tokenizer + ": " + (text.length() > 40 ? text.substring(0, 40) + "..." : text);
        }
    }

    /** One chat rendering of the reference; {@code ids} is null where the reference has none. */
    public record ChatCase(String tokenizer, List<ChatMessage> messages, String prompt, int[] ids) {
        @Override
        public String toString() {
            return tokenizer + ": " + messages.size() + " messages";
        }
    }

    /** Every encoding case of every fixture tokenizer. */
    public static List<EncodingCase> encodingCases() {
        List<EncodingCase> cases = new ArrayList<>();
        for (String name : NAMES) {
            for (JsonElement e : reference(name).getAsJsonArray("cases")) {
                JsonObject c = e.getAsJsonObject();
                cases.add(new EncodingCase(name, c.get("text").getAsString(), ints(c.getAsJsonArray("ids")),
                        c.get("decoded").getAsString()));
            }
        }
        return cases;
    }

    /** Every chat rendering case of every fixture tokenizer. */
    public static List<ChatCase> chatCases() {
        List<ChatCase> cases = new ArrayList<>();
        for (String name : NAMES) {
            for (JsonElement e : reference(name).getAsJsonArray("chat_template")) {
                JsonObject c = e.getAsJsonObject();
                List<ChatMessage> messages = new ArrayList<>();
                for (JsonElement m : c.getAsJsonArray("messages")) {
                    JsonObject message = m.getAsJsonObject();
                    messages.add(new ChatMessage(message.get("role").getAsString(),
                            message.get("content").getAsString()));
                }
                cases.add(new ChatCase(name, messages, c.get("prompt").getAsString(),
                        c.has("ids") ? ints(c.getAsJsonArray("ids")) : null));
            }
        }
        return cases;
    }

    private static JsonObject reference(String name) {
        try {
            return JsonParser.parseString(Files.readString(folder(name).resolve("reference.json"),
                    StandardCharsets.UTF_8)).getAsJsonObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static int[] ints(JsonArray array) {
        int[] values = new int[array.size()];
        for (int i = 0; i < values.length; i++) {
            values[i] = array.get(i).getAsInt();
        }
        return values;
    }
}
