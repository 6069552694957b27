package dev.kiln.cli;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import dev.kiln.api.tokenizer.ChatMessage;
import dev.kiln.api.tokenizer.ChatTemplate;
import dev.kiln.api.tokenizer.Tokenizer;
import dev.kiln.api.tokenizer.TokenizerFactory;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.Function;
import org.osgi.framework.BundleContext;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code kiln tokenize}: reads JSON lines on standard input — strings, or with {@code --chat} arrays of messages
 * rendered through the chat template first — and prints one JSON array of token ids per line. A line that is not
 * valid input is answered with a JSON object {@code {"error": ...}} on its own line, and the job goes on.
 */
@Component(service = Function.class, property = CommandJob.COMMAND + "=tokenize")
public final class TokenizeJob extends CommandJob {
    private BundleContext context;

    @Activate
    void activate(BundleContext context) {
        this.context = context;
    }

    @Override
    protected Object newCommand() {
        return new Tokenize(new KilnServices(context));
    }

    @Command(name = "tokenize", mixinStandardHelpOptions = true,
            description = "Tokenize JSON-lines strings (or --chat message arrays) from standard input.")
    static final class Tokenize implements Callable<Integer> {
        private final KilnServices services;

        @Option(names = "--tokenizer", required = true, description = "Folder with tokenizer.json (and tokenizer_config.json).")
        Path folder;

        @Option(names = "--chat", description = "Each line is a JSON array of {role, content} messages, rendered with the chat template.")
        boolean chat;

        @Option(names = "--add-special-tokens", negatable = true, defaultValue = "true", fallbackValue = "true",
                description = "Add the tokenizer's own special tokens (BOS) to plain strings (default: ${DEFAULT-VALUE}).")
        boolean addSpecialTokens;

        Tokenize(KilnServices services) {
            this.services = services;
        }

        @Override
        public Integer call() throws Exception {
            if (!Files.isDirectory(folder)) throw new IllegalArgumentException("tokenizer folder " + folder + " does not exist");
            TokenizerFactory factory = services.tokenizerFactory(folder);
            Tokenizer tokenizer = factory.load(folder);
            ChatTemplate template = chat ? factory.chatTemplate(folder).orElseThrow(
                    () -> new IllegalArgumentException(folder + " has no chat template")) : null;
            PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            for (String line; (line = in.readLine()) != null; ) {
                if (line.isBlank()) continue;
                try {
                    int[] ids = chat ? tokenizer.encode(template.render(messages(line), true, Map.of()), false)
                            : tokenizer.encode(string(line), addSpecialTokens);
                    JsonArray array = new JsonArray();
                    for (int id : ids) array.add(id);
                    out.println(array);
                } catch (IllegalArgumentException | JsonParseException | IllegalStateException e) {
                    JsonObject error = new JsonObject();
                    error.addProperty("error", e.getMessage());
                    out.println(error);
                }
                out.flush();
            }
            return 0;
        }

        private static String string(String line) {
            JsonElement e = JsonParser.parseString(line);
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) {
                throw new IllegalArgumentException("expected a JSON string per line");
            }
            return e.getAsString();
        }

        private static List<ChatMessage> messages(String line) {
            JsonElement e = JsonParser.parseString(line);
            if (!e.isJsonArray()) throw new IllegalArgumentException("expected a JSON array of messages per line");
            List<ChatMessage> out = new ArrayList<>();
            for (JsonElement m : e.getAsJsonArray()) {
                if (!m.isJsonObject() || !m.getAsJsonObject().has("role")) {
                    throw new IllegalArgumentException("each message needs a role and a content");
                }
                JsonObject o = m.getAsJsonObject();
                out.add(new ChatMessage(o.get("role").getAsString(),
                        o.has("content") && !o.get("content").isJsonNull() ? o.get("content").getAsString() : ""));
            }
            return out;
        }
    }
}
