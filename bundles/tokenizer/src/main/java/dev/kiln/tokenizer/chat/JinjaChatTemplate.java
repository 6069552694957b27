package dev.kiln.tokenizer.chat;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.el.JinjavaInterpreterResolver;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import dev.kiln.api.tokenizer.ChatMessage;
import dev.kiln.api.tokenizer.ChatTemplate;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.Supplier;
import jinjava.javax.el.CompositeELResolver;

/**
 * A Hugging Face chat template rendered with Jinjava under the settings transformers uses for Jinja2
 * ({@code trim_blocks}, {@code lstrip_blocks}), with the Python behaviour templates rely on: Python string methods,
 * {@code tojson} as {@code json.dumps}, {@code raise_exception}, {@code strftime_now}; constructs Jinjava parses
 * differently are rewritten first ({@link Jinja2Source}). Jinjava's "natural" operator precedence stays off: it reads
 * {@code not x is defined} as {@code (not x) is defined}, where Jinja2 tests first.
 * Thread-safe: each render has its own interpreter.
 */
public final class JinjaChatTemplate implements ChatTemplate {
    private final String source;
    private final Map<String, String> specialTokens;
    private final Jinjava jinjava;

    /**
     * @param template      the Jinja source
     * @param specialTokens template variables for the special tokens ({@code bos_token}, {@code eos_token}, ...)
     */
    public JinjaChatTemplate(String template, Map<String, String> specialTokens) {
        this.source = Jinja2Source.toJinjava(Objects.requireNonNull(template));
        this.specialTokens = Map.copyOf(specialTokens);
        this.jinjava = withBundleClassLoader(JinjaChatTemplate::newEngine);
    }

    /**
     * Runs Jinjava with this bundle's class loader as the thread's context loader: its expression factory loads
     * classes by name through the context loader, which in an OSGi container is not the loader that holds them.
     */
    private static <T> T withBundleClassLoader(Supplier<T> action) {
        Thread thread = Thread.currentThread();
        ClassLoader previous = thread.getContextClassLoader();
        thread.setContextClassLoader(JinjaChatTemplate.class.getClassLoader());
        try {
            return action.get();
        } finally {
            thread.setContextClassLoader(previous);
        }
    }

    private static Jinjava newEngine() {
        CompositeELResolver resolver = new CompositeELResolver();
        resolver.add(new PythonMethodResolver());
        resolver.add(JinjavaInterpreterResolver.DEFAULT_RESOLVER_READ_WRITE);
        LegacyOverrides jinja2Semantics = LegacyOverrides.newBuilder()
                .withIterateOverMapKeys(true)
                .withEvaluateMapKeys(true)
                .withUsePyishObjectMapper(true)
                .withParseWhitespaceControlStrictly(true)
                .withAllowAdjacentTextNodes(true)
                .withUseTrimmingForNotesAndExpressions(true)
                .withKeepNullableLoopValues(true)
                .build();
        JinjavaConfig config = JinjavaConfig.newBuilder()
                .withTrimBlocks(true)
                .withLstripBlocks(true)
                .withFailOnUnknownTokens(false)
                .withNestedInterpretationEnabled(false)
                .withLegacyOverrides(jinja2Semantics)
                .withElResolver(resolver)
                .build();
        Jinjava jinjava = new Jinjava(config);
        jinjava.getGlobalContext().registerFilter(new PythonJsonFilter());
        jinjava.getGlobalContext().registerTag(new GenerationTag());
        jinjava.getGlobalContext().registerFunction(new ELFunctionDefinition("", "raise_exception",
                TemplateFunctions.class, "raiseException", String.class));
        jinjava.getGlobalContext().registerFunction(new ELFunctionDefinition("", "strftime_now",
                TemplateFunctions.class, "strftimeNow", String.class));
        return jinjava;
    }

    @Override
    public String render(List<ChatMessage> messages, boolean addGenerationPrompt, Map<String, Object> variables) {
        Map<String, Object> context = new HashMap<>(specialTokens);
        variables.forEach((name, value) -> context.put(name, plain(value)));
        List<Object> conversation = new ArrayList<>(messages.size());
        for (ChatMessage message : messages) {
            conversation.add(asMap(message));
        }
        context.put("messages", conversation);
        context.put("add_generation_prompt", addGenerationPrompt);
        RenderResult result = withBundleClassLoader(() -> jinjava.renderForResult(source, context));
        for (TemplateError error : result.getErrors()) {
            TemplateFunctions.TemplateRejection rejection = rejection(error.getException());
            if (rejection != null) {
                throw new IllegalArgumentException(rejection.getMessage());
            }
        }
        for (TemplateError error : result.getErrors()) {
            if (error.getSeverity() == TemplateError.ErrorType.FATAL) {
                throw new IllegalStateException("chat template failed at line " + error.getLineno() + ": "
                        + error.getMessage());
            }
        }
        return result.getOutput();
    }

    private static TemplateFunctions.TemplateRejection rejection(Throwable error) {
        for (Throwable t = error; t != null; t = t.getCause()) {
            if (t instanceof TemplateFunctions.TemplateRejection r) {
                return r;
            }
            if (t.getCause() == t) {
                break;
            }
        }
        return null;
    }

    /** A message as the template sees it: a dict with role, content and the extra fields. */
    private static Map<String, Object> asMap(ChatMessage message) {
        Map<String, Object> map = new LinkedHashMap<>();
        map.put("role", message.role());
        map.put("content", message.content());
        if (message.extra() != null) {
            message.extra().forEach((name, value) -> {
                if (!name.equals("role") && !name.equals("content")) {
                    map.put(name, plain(value));
                }
            });
        }
        return map;
    }

    /** Plain maps, lists, strings, numbers and booleans, whatever JSON form the caller used (Gson trees included). */
    static Object plain(Object value) {
        return switch (value) {
            case null -> null;
            case JsonElement json -> plainJson(json);
            case Map<?, ?> map -> {
                Map<String, Object> copy = new LinkedHashMap<>();
                map.forEach((k, v) -> copy.put(String.valueOf(k), plain(v)));
                yield copy;
            }
            case Iterable<?> items -> {
                List<Object> copy = new ArrayList<>();
                items.forEach(item -> copy.add(plain(item)));
                yield copy;
            }
            case Object[] array -> plain(java.util.Arrays.asList(array));
            default -> value;
        };
    }

    private static Object plainJson(JsonElement json) {
        if (json.isJsonNull()) {
            return null;
        }
        if (json instanceof JsonObject object) {
            Map<String, Object> map = new LinkedHashMap<>();
            object.entrySet().forEach(e -> map.put(e.getKey(), plainJson(e.getValue())));
            return map;
        }
        if (json instanceof JsonArray array) {
            List<Object> list = new ArrayList<>();
            array.forEach(e -> list.add(plainJson(e)));
            return list;
        }
        JsonPrimitive primitive = json.getAsJsonPrimitive();
        if (primitive.isBoolean()) {
            return primitive.getAsBoolean();
        }
        if (primitive.isNumber()) {
            // JSON integers stay integers, as Python's json module reads them.
            String text = primitive.getAsString();
            boolean integral = text.indexOf('.') < 0 && text.indexOf('e') < 0 && text.indexOf('E') < 0;
            return integral ? (Object) primitive.getAsBigInteger().longValueExact() : primitive.getAsDouble();
        }
        return primitive.getAsString();
    }
}
