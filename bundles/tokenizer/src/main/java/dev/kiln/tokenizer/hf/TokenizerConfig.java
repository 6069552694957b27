package dev.kiln.tokenizer.hf;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;

/**
 * What Kiln reads from a model folder's {@code tokenizer_config.json} (and {@code chat_template.jinja}, where newer
 * checkpoints keep the template): the special tokens by role and the chat templates.
 *
 * @param specialTokens  role ({@code bos_token}, {@code eos_token}, {@code pad_token}, {@code unk_token}) to token text;
 *                       only roles that are set
 * @param chatTemplates  template name to Jinja source, the default one named {@code default}
 */
public record TokenizerConfig(Map<String, String> specialTokens, Map<String, String> chatTemplates) {
    /** File name of the configuration. */
    public static final String FILE = "tokenizer_config.json";
    /** File name under which newer checkpoints keep the default chat template. */
    public static final String TEMPLATE_FILE = "chat_template.jinja";
    /** Name of the template used unless another is asked for. */
    public static final String DEFAULT_TEMPLATE = "default";

    private static final String[] ROLES = {"bos_token", "eos_token", "pad_token", "unk_token"};

    public TokenizerConfig {
        specialTokens = Map.copyOf(specialTokens);
        chatTemplates = Map.copyOf(chatTemplates);
    }

    /** A configuration with nothing set, for folders without the file. */
    public static TokenizerConfig empty() {
        return new TokenizerConfig(Map.of(), Map.of());
    }

    /** Reads the folder's configuration; a folder without one gives {@link #empty()}. */
    public static TokenizerConfig read(Path modelFolder) throws IOException {
        Path file = modelFolder.resolve(FILE);
        TokenizerConfig config = empty();
        if (Files.isRegularFile(file)) {
            try (Reader reader = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
                JsonElement root = JsonParser.parseReader(reader);
                if (!root.isJsonObject()) {
                    throw new IOException(file + ": not a JSON object");
                }
                config = parse(root.getAsJsonObject());
            } catch (com.google.gson.JsonParseException e) {
                throw new IOException(file + ": " + e.getMessage(), e);
            }
        }
        Path templateFile = modelFolder.resolve(TEMPLATE_FILE);
        if (!config.chatTemplates.containsKey(DEFAULT_TEMPLATE) && Files.isRegularFile(templateFile)) {
            Map<String, String> templates = new LinkedHashMap<>(config.chatTemplates);
            templates.put(DEFAULT_TEMPLATE, Files.readString(templateFile, StandardCharsets.UTF_8));
            config = new TokenizerConfig(config.specialTokens, templates);
        }
        return config;
    }

    /** Reads the configuration object. */
    public static TokenizerConfig parse(JsonObject json) throws IOException {
        Map<String, String> special = new LinkedHashMap<>();
        for (String role : ROLES) {
            tokenText(json.get(role)).ifPresent(text -> special.put(role, text));
        }
        return new TokenizerConfig(special, templates(json.get("chat_template")));
    }

    /** The default chat template, if there is one. */
    public Optional<String> defaultChatTemplate() {
        return Optional.ofNullable(chatTemplates.get(DEFAULT_TEMPLATE));
    }

    /** A special token given as a plain string or as a serialized {@code AddedToken} object. */
    private static Optional<String> tokenText(JsonElement value) throws IOException {
        if (value == null || value.isJsonNull()) {
            return Optional.empty();
        }
        if (value.isJsonPrimitive()) {
            return Optional.of(value.getAsString());
        }
        if (value.isJsonObject() && value.getAsJsonObject().has("content")) {
            return Optional.of(value.getAsJsonObject().get("content").getAsString());
        }
        throw new IOException("special token is neither a string nor an AddedToken object: " + value);
    }

    /** A single template string, or a list of {@code {name, template}} objects. */
    private static Map<String, String> templates(JsonElement value) throws IOException {
        Map<String, String> templates = new LinkedHashMap<>();
        if (value == null || value.isJsonNull()) {
            return templates;
        }
        if (value.isJsonPrimitive()) {
            templates.put(DEFAULT_TEMPLATE, value.getAsString());
            return templates;
        }
        if (value.isJsonArray()) {
            JsonArray list = value.getAsJsonArray();
            for (JsonElement entry : list) {
                if (!entry.isJsonObject() || !entry.getAsJsonObject().has("name")
                        || !entry.getAsJsonObject().has("template")) {
                    throw new IOException("chat_template entry without name and template: " + entry);
                }
                JsonObject object = entry.getAsJsonObject();
                templates.put(object.get("name").getAsString(), object.get("template").getAsString());
            }
            return templates;
        }
        throw new IOException("chat_template is neither a string nor a list of named templates");
    }
}
