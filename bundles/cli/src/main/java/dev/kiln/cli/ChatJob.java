package dev.kiln.cli;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.InferenceEngine;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.api.engine.TokenListener;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.api.tokenizer.ChatMessage;
import dev.kiln.api.tokenizer.ChatTemplate;
import dev.kiln.api.tokenizer.IncrementalDetokenizer;
import dev.kiln.api.tokenizer.Tokenizer;
import dev.kiln.api.tokenizer.TokenizerFactory;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Hashtable;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.Callable;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.function.Function;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceReference;
import org.osgi.service.cm.ConfigurationAdmin;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code kiln chat}: an interactive conversation in the terminal with a model, streamed token by token through the
 * engine, the tokenizer and the chat template — the same path the HTTP API takes, without HTTP.
 */
@Component(service = Function.class, property = CommandJob.COMMAND + "=chat")
public final class ChatJob extends CommandJob {
    private BundleContext context;

    @Activate
    void activate(BundleContext context) {
        this.context = context;
    }

    @Override
    protected Object newCommand() {
        return new Chat(context, new KilnServices(context));
    }

    @Command(name = "chat", mixinStandardHelpOptions = true,
            description = "Chat with a model in the terminal; /exit or end of input quits, /reset forgets the conversation.")
    static final class Chat implements Callable<Integer> {
        private final BundleContext context;
        private final KilnServices services;

        @Option(names = "--model", description = "Model folder (default: the embedded default model).")
        Path model;

        @Option(names = "--tokenizer", description = "Tokenizer folder (default: the model folder).")
        Path tokenizerFolder;

        @Option(names = "--system", description = "A system message opening the conversation.")
        String system;

        @Option(names = "--max-tokens", defaultValue = "512", description = "Most tokens per answer (default: ${DEFAULT-VALUE}).")
        int maxTokens;

        @Option(names = "--temperature", defaultValue = "0.6", description = "Sampling temperature (default: ${DEFAULT-VALUE}).")
        double temperature;

        @Option(names = "--top-p", defaultValue = "0.95", description = "Nucleus sampling (default: ${DEFAULT-VALUE}).")
        double topP;

        Chat(BundleContext context, KilnServices services) {
            this.context = context;
            this.services = services;
        }

        @Override
        public Integer call() throws Exception {
            if (model == null) {
                String home = context.getProperty("kiln.home");
                if (home == null) throw new IllegalArgumentException("--model is required");
                model = Path.of(home, "models", "default");
            }
            if (!Files.isDirectory(model)) throw new IllegalArgumentException("model folder " + model + " does not exist");
            Path tokDir = tokenizerFolder != null ? tokenizerFolder : model;
            TokenizerFactory factory = services.tokenizerFactory(tokDir);
            Tokenizer tokenizer = factory.load(tokDir);
            ChatTemplate template = factory.chatTemplate(tokDir)
                    .orElseThrow(() -> new IllegalArgumentException(tokDir + " has no chat template"));
            InferenceEngine engine = startEngine();
            PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            List<ChatMessage> conversation = new ArrayList<>();
            if (system != null) conversation.add(new ChatMessage("system", system));
            out.println("Chatting with " + engine.model().orElseThrow().id() + " (/exit to quit, /reset to start over)");
            int turn = 0;
            while (true) {
                out.print("> ");
                String line = in.readLine();
                if (line == null || line.strip().equals("/exit")) break;
                if (line.strip().equals("/reset")) {
                    conversation.removeIf(m -> !m.role().equals("system"));
                    continue;
                }
                if (line.isBlank()) continue;
                conversation.add(new ChatMessage("user", line));
                int[] prompt = tokenizer.encode(template.render(conversation, true, Map.of()), false);
                SamplingParams sampling = new SamplingParams(temperature, topP, 0, 0, 0, 0, 1, null, 0);
                BlockingQueue<Object> events = new LinkedBlockingQueue<>();
                engine.submit(new GenerationRequest("chat-" + turn++, prompt, sampling, maxTokens, 0, new int[0], false, -1,
                        new int[0]), new TokenListener() {
                    @Override
                    public void onTokens(TokenEvent event) {
                        events.add(event);
                    }

                    @Override
                    public void onError(Throwable error) {
                        events.add(error);
                    }
                });
                IncrementalDetokenizer detokenizer = tokenizer.newDetokenizer(true);
                StringBuilder answer = new StringBuilder();
                while (true) {
                    Object e = events.take();
                    if (e instanceof Throwable t) {
                        out.println("\n[error: " + t.getMessage() + "]");
                        break;
                    }
                    TokenEvent event = (TokenEvent) e;
                    for (int t : event.tokens()) {
                        String piece = detokenizer.add(t);
                        answer.append(piece);
                        out.print(piece);
                    }
                    if (event.finish() != null) {
                        String rest = detokenizer.flush();
                        answer.append(rest);
                        out.println(rest);
                        break;
                    }
                }
                conversation.add(new ChatMessage("assistant", answer.toString()));
            }
            return 0;
        }

        /** Points the engine at the model through Config Admin and waits until the model is loaded. */
        private InferenceEngine startEngine() throws Exception {
            ServiceReference<ConfigurationAdmin> ref = context.getServiceReference(ConfigurationAdmin.class);
            if (ref == null) throw new IllegalStateException("Config Admin is not running");
            var config = context.getService(ref).getConfiguration(KilnProperties.ENGINE_PID, "?");
            Hashtable<String, Object> properties = new Hashtable<>();
            properties.put("model", model.toAbsolutePath().normalize().toString());
            config.update(properties);
            long deadline = System.nanoTime() + 120_000_000_000L;
            while (System.nanoTime() < deadline) {
                for (ServiceReference<InferenceEngine> r : context.getServiceReferences(InferenceEngine.class, null)) {
                    InferenceEngine e = context.getService(r);
                    if (e != null && e.model().isPresent()
                            && e.model().get().location().equals(properties.get("model"))) return e;
                }
                Thread.sleep(50);
            }
            throw new IllegalStateException("the model did not load within 120 s");
        }
    }
}
