package dev.kiln.server.openai;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import dev.kiln.api.engine.InferenceEngine;
import dev.kiln.api.engine.ModelDescription;
import dev.kiln.api.tokenizer.ChatTemplate;
import dev.kiln.api.tokenizer.Tokenizer;
import dev.kiln.api.tokenizer.TokenizerFactory;
import dev.kiln.server.prometheus.RequestMetrics;
import dev.kiln.server.prometheus.RequestTimer;
import jakarta.servlet.Servlet;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import org.osgi.framework.BundleContext;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;
import org.osgi.service.component.annotations.ReferencePolicyOption;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;
import org.osgi.service.servlet.whiteboard.propertytypes.HttpWhiteboardServletPattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The OpenAI-compatible API (vLLM's shapes and extensions): {@code /v1/chat/completions}, {@code /v1/completions},
 * {@code /v1/models}, {@code /tokenize}, {@code /detokenize}. Every failure is answered in OpenAI's error format;
 * nothing internal ever reaches a client. The engine and tokenizer factories are bound dynamically: a model loaded
 * or an engine replaced at runtime is served from the next request.
 */
@Component(service = Servlet.class, configurationPid = OpenAiServlet.PID)
@HttpWhiteboardServletPattern({"/v1/*", "/tokenize", "/detokenize"})
@Designate(ocd = OpenAiServlet.Config.class)
public class OpenAiServlet extends HttpServlet {
    static final String PID = "dev.kiln.server";
    private static final long serialVersionUID = 1L;
    private static final Logger LOG = LoggerFactory.getLogger(OpenAiServlet.class);

    @ObjectClassDefinition(name = "Kiln OpenAI-compatible API")
    public @interface Config {
        @AttributeDefinition(name = "Tokenizer folder", description = "Folder with tokenizer.json; default: the model's folder")
        String tokenizer() default "";

        @AttributeDefinition(name = "Reasoning parser", description = "auto, deepseek_r1 or none: separate <think> reasoning into reasoning_content")
        String reasoning$_$parser() default "auto";

        @AttributeDefinition(name = "Body limit", description = "Largest request body in bytes (413 above); 0: the "
                + "framework property kiln.max-body-bytes (kiln serve --max-body-bytes), else 8 MiB")
        long max$_$body$_$bytes() default 0;
    }

    static final long DEFAULT_MAX_BODY_BYTES = 8L << 20;
    /** Framework property with the body limit, set by {@code kiln serve --max-body-bytes}. */
    public static final String MAX_BODY_PROPERTY = "kiln.max-body-bytes";

    @Reference(cardinality = ReferenceCardinality.OPTIONAL, policy = ReferencePolicy.DYNAMIC,
            policyOption = ReferencePolicyOption.GREEDY)
    private volatile InferenceEngine engine;

    @Reference(cardinality = ReferenceCardinality.MULTIPLE, policy = ReferencePolicy.DYNAMIC,
            policyOption = ReferencePolicyOption.GREEDY)
    private final List<TokenizerFactory> tokenizerFactories = new CopyOnWriteArrayList<>();

    @Reference(cardinality = ReferenceCardinality.OPTIONAL, policy = ReferencePolicy.DYNAMIC,
            policyOption = ReferencePolicyOption.GREEDY)
    private volatile RequestMetrics metrics;

    private transient volatile Config config;
    private transient long maxBodyBytes;
    private transient String tokenizerOverride;
    private transient volatile ServedModel cached;

    @Activate
    void activate(Config config, BundleContext context) {
        this.config = config;
        String fromLauncher = context.getProperty(MAX_BODY_PROPERTY);
        this.maxBodyBytes = config.max$_$body$_$bytes() > 0 ? config.max$_$body$_$bytes()
                : fromLauncher != null && !fromLauncher.isBlank() ? Long.parseLong(fromLauncher.strip()) : DEFAULT_MAX_BODY_BYTES;
        String dir = config.tokenizer().isBlank() ? context.getProperty("kiln.tokenizer") : config.tokenizer();
        this.tokenizerOverride = dir == null || dir.isBlank() ? null : dir;
    }

    @Override
    protected void service(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        long arrival = System.nanoTime();
        Responder out = new Responder(resp);
        String path = req.getServletPath() + (req.getPathInfo() == null ? "" : req.getPathInfo());
        try {
            route(req.getMethod(), path, req, out, arrival);
        } catch (ApiException e) {
            if (out.streaming()) {
                LOG.debug("error after the stream began: {}", e.getMessage());
                return;
            }
            out.json(e.status, error(e.getMessage(), e.type, e.param, e.code));
        } catch (IOException e) {
            // The client went away: the session was closed (and its engine work cancelled) on the way out.
            LOG.debug("client disconnected from {}: {}", path, e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (RuntimeException e) {
            LOG.error("internal error serving {} {}", req.getMethod(), path, e);
            if (!out.streaming() && !resp.isCommitted()) {
                out.json(500, error("Internal error: " + e.getClass().getSimpleName(), "internal_error", null, null));
            }
        }
    }

    private void route(String method, String path, HttpServletRequest req, Responder out, long arrival)
            throws IOException, InterruptedException {
        switch (path) {
            case "/v1/models" -> {
                requireMethod(method, "GET", path);
                out.json(200, models());
            }
            case "/v1/chat/completions" -> {
                requireMethod(method, "POST", path);
                JsonRequest r = body(req);
                Completions.chat(r, model(r), out, timer(arrival));
            }
            case "/v1/completions" -> {
                requireMethod(method, "POST", path);
                JsonRequest r = body(req);
                Completions.completion(r, model(r), out, timer(arrival));
            }
            case "/tokenize" -> {
                requireMethod(method, "POST", path);
                JsonRequest r = body(req);
                out.json(200, Tokenization.tokenize(r, model(r)));
            }
            case "/detokenize" -> {
                requireMethod(method, "POST", path);
                JsonRequest r = body(req);
                out.json(200, Tokenization.detokenize(r, model(r)));
            }
            default -> {
                if (path.startsWith("/v1/models/")) {
                    requireMethod(method, "GET", path);
                    String id = path.substring("/v1/models/".length());
                    for (JsonElement m : models().getAsJsonArray("data")) {
                        if (m.getAsJsonObject().get("id").getAsString().equals(id)) {
                            out.json(200, m.getAsJsonObject());
                            return;
                        }
                    }
                    throw ApiException.modelNotFound(id);
                }
                throw ApiException.notFound("No route for " + method + " " + path);
            }
        }
    }

    /** Times a generation call for the server's metrics, or null while the metrics component is not bound. */
    private RequestTimer timer(long arrival) {
        RequestMetrics m = metrics;
        return m == null ? null : m.start(arrival);
    }

    private static void requireMethod(String method, String expected, String path) {
        if (!method.equals(expected)) throw ApiException.methodNotAllowed(method, path);
    }

    private JsonRequest body(HttpServletRequest req) throws IOException {
        String type = req.getContentType();
        if (type != null && !type.toLowerCase().startsWith("application/json")) {
            throw ApiException.invalid(null, "Content-Type must be application/json");
        }
        long limit = maxBodyBytes;
        long declared = req.getContentLengthLong();
        if (declared > limit) {
            // Past the discard bound reading cannot save the connection, and reading would ask a client that waits
            // for "100 Continue" to upload a body that is refused anyway.
            if (declared <= discardBudget(limit)) discard(req.getInputStream(), limit);
            throw ApiException.tooLarge(limit);
        }
        byte[] bytes = readLimited(req.getInputStream(), limit);
        JsonElement parsed;
        try {
            JsonReader reader = new JsonReader(new StringReader(new String(bytes, StandardCharsets.UTF_8)));
            reader.setStrictness(Strictness.STRICT);
            reader.setNestingLimit(64);
            parsed = JsonParser.parseReader(reader);
            if (reader.peek() != com.google.gson.stream.JsonToken.END_DOCUMENT) throw new JsonParseException("trailing data");
        } catch (JsonParseException | IllegalStateException | IOException | StackOverflowError e) {
            throw ApiException.invalid(null, "The request body is not valid JSON");
        }
        if (!(parsed instanceof JsonObject o)) throw ApiException.invalid(null, "The request body must be a JSON object");
        return new JsonRequest(o);
    }

    private static byte[] readLimited(InputStream in, long limit) throws IOException {
        ByteArrayOutputStream buffer = new ByteArrayOutputStream();
        byte[] chunk = new byte[8192];
        for (int n; (n = in.read(chunk)) > 0; ) {
            if (buffer.size() + n > limit) {
                discard(in, limit);
                throw ApiException.tooLarge(limit);
            }
            buffer.write(chunk, 0, n);
        }
        return buffer.toByteArray();
    }

    /**
     * Reads and drops what is left of a refused body, up to {@link #DISCARD_FACTOR} times the limit (at most
     * {@link #MOST_DISCARDED} bytes): a client still sending its body when the server answers and closes the connection
     * gets a reset instead of the 413, and its HTTP library reports a broken connection. Past the bound the server stops
     * reading (the connection then closes) rather than spend its bandwidth on an oversized upload.
     */
    private static void discard(InputStream in, long limit) {
        long budget = discardBudget(limit);
        byte[] chunk = new byte[65536];
        try {
            for (int n; budget > 0 && (n = in.read(chunk, 0, (int) Math.min(chunk.length, budget))) > 0; ) budget -= n;
        } catch (IOException e) {
            // the client went away: nothing left to answer
        }
    }

    private static long discardBudget(long limit) {
        return limit >= MOST_DISCARDED / DISCARD_FACTOR ? MOST_DISCARDED : Math.max(limit, 1) * DISCARD_FACTOR;
    }

    private static final long DISCARD_FACTOR = 4, MOST_DISCARDED = 64L << 20;

    /** The served model named by the request (if it names one), with its tokenizer. */
    private ServedModel model(JsonRequest r) {
        ServedModel served = current();
        String requested = r.string("model", null);
        if (requested != null && !requested.equals(served.description().id())
                && !requested.equals(served.description().location())) {
            throw ApiException.modelNotFound(requested);
        }
        return served;
    }

    private ServedModel current() {
        InferenceEngine e = engine;
        if (e == null) throw ApiException.unavailable("No inference engine is running");
        Optional<ModelDescription> description = e.model();
        if (description.isEmpty()) throw ApiException.unavailable("No model is loaded yet");
        ServedModel known = cached;
        if (known != null && known.engine() == e && known.description().equals(description.get())) return known;
        synchronized (this) {
            known = cached;
            if (known != null && known.engine() == e && known.description().equals(description.get())) return known;
            cached = load(e, description.get());
            return cached;
        }
    }

    private ServedModel load(InferenceEngine e, ModelDescription d) {
        Path folder = Path.of(tokenizerOverride != null ? tokenizerOverride : d.location());
        Tokenizer tokenizer = null;
        ChatTemplate template = null;
        for (TokenizerFactory f : tokenizerFactories) {
            if (!f.canLoad(folder)) continue;
            try {
                tokenizer = f.load(folder);
                template = f.chatTemplate(folder).orElse(null);
            } catch (IOException | RuntimeException ex) {
                LOG.error("cannot load the tokenizer of {}: {}", folder, ex.getMessage());
                throw ApiException.unavailable("The model's tokenizer could not be loaded: " + ex.getMessage());
            }
            break;
        }
        boolean reasoning = switch (config.reasoning$_$parser()) {
            case "deepseek_r1" -> true;
            case "none" -> false;
            default -> tokenizer != null && tokenizer.tokenId("</think>").isPresent();
        };
        if (tokenizer == null) LOG.info("{} has no tokenizer: prompts must be token ids", folder);
        return new ServedModel(e, d, tokenizer, template, reasoning);
    }

    private JsonObject models() {
        JsonArray data = new JsonArray();
        InferenceEngine e = engine;
        Optional<ModelDescription> d = e == null ? Optional.empty() : e.model();
        if (d.isPresent()) {
            JsonObject m = new JsonObject();
            m.addProperty("id", d.get().id());
            m.addProperty("object", "model");
            m.addProperty("created", 0);
            m.addProperty("owned_by", "kiln");
            m.addProperty("root", d.get().location());
            m.add("parent", com.google.gson.JsonNull.INSTANCE);
            m.addProperty("max_model_len", d.get().contextLength());
            data.add(m);
        }
        JsonObject list = new JsonObject();
        list.addProperty("object", "list");
        list.add("data", data);
        return list;
    }

    static JsonObject error(String message, String type, String param, String code) {
        JsonObject inner = new JsonObject();
        inner.addProperty("message", message);
        inner.addProperty("type", type);
        inner.add("param", param == null ? com.google.gson.JsonNull.INSTANCE : new JsonPrimitive(param));
        inner.add("code", code == null ? com.google.gson.JsonNull.INSTANCE : new JsonPrimitive(code));
        JsonObject o = new JsonObject();
        o.add("error", inner);
        return o;
    }
}
