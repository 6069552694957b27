package dev.kiln.server.security;

import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import dev.kiln.api.KilnProperties;
import jakarta.servlet.Filter;
import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.ServletRequest;
import jakarta.servlet.ServletResponse;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.osgi.framework.BundleContext;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.servlet.whiteboard.propertytypes.HttpWhiteboardFilterPattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Requires {@code Authorization: Bearer KEY} on the OpenAI-compatible API ({@code /v1/*}, {@code /tokenize},
 * {@code /detokenize}) when keys are configured, as vLLM's {@code --api-key} does; without keys the API is open.
 * A missing or wrong key is answered 401 in OpenAI's error format, with the key never echoed.
 *
 * <p>Any of these keys is accepted: Config Admin PID {@code dev.kiln.server} {@code api-key} (clear or
 * {@code {sha-256}base64}, several allowed for rotation) and {@code api-key-file} (one key per line), and the
 * framework property {@code kiln.api-keys} that {@code kiln serve --api-key/--api-key-file} sets, holding digests
 * only. A key file that cannot be read closes the API (503) instead of opening it.
 */
@Component(service = Filter.class, configurationPid = ApiKeyFilter.PID,
        property = {KilnProperties.NAME + "=api-key", "service.ranking:Integer=100"})
@HttpWhiteboardFilterPattern({"/v1/*", "/tokenize", "/detokenize"})
public final class ApiKeyFilter implements Filter {
    static final String PID = "dev.kiln.server";
    /** Framework property with comma-separated key digests, set by the launcher. */
    public static final String KEYS_PROPERTY = "kiln.api-keys";
    private static final Logger LOG = LoggerFactory.getLogger(ApiKeyFilter.class);

    private volatile ApiKeys keys = ApiKeys.of(List.of());
    private volatile String broken;

    /** Created by Declarative Services. */
    public ApiKeyFilter() {}

    @Activate
    void activate(BundleContext context, Map<String, Object> properties) {
        try {
            List<String> specs = new ArrayList<>(Settings.list(properties, "api-key", null, null));
            String file = Settings.string(properties, "api-key-file", null, null);
            if (file != null) specs.addAll(ApiKeys.readFile(Path.of(file)));
            specs.addAll(Settings.split(context.getProperty(KEYS_PROPERTY)));
            keys = ApiKeys.of(specs);
            if (file != null && !keys.required()) throw new IllegalArgumentException("the API key file " + file + " holds no key");
            broken = null;
            if (keys.required()) LOG.info("the API requires a key ({} configured)", keys.size());
        } catch (IOException | RuntimeException e) {
            broken = e.getMessage();
            LOG.error("API keys could not be loaded; the API refuses every request until this is fixed: {}", e.getMessage());
        }
    }

    @Override
    public void doFilter(ServletRequest request, ServletResponse response, FilterChain chain) throws IOException, ServletException {
        HttpServletRequest req = (HttpServletRequest) request;
        HttpServletResponse resp = (HttpServletResponse) response;
        if (broken != null) {
            reply(resp, 503, "The server's API keys are misconfigured; see its log.", "service_unavailable", null);
            return;
        }
        ApiKeys current = keys;
        if (!current.required()) {
            chain.doFilter(request, response);
            return;
        }
        var token = ApiKeys.bearerToken(req.getHeader("Authorization"));
        if (token.isEmpty()) {
            resp.setHeader("WWW-Authenticate", "Bearer");
            reply(resp, 401, "You didn't provide an API key. You need to provide your API key in an Authorization header "
                    + "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "invalid_request_error", "missing_api_key");
            return;
        }
        if (!current.matches(token.get())) {
            resp.setHeader("WWW-Authenticate", "Bearer error=\"invalid_token\"");
            reply(resp, 401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key");
            return;
        }
        chain.doFilter(request, response);
    }

    private static void reply(HttpServletResponse resp, int status, String message, String type, String code) throws IOException {
        JsonObject inner = new JsonObject();
        inner.addProperty("message", message);
        inner.addProperty("type", type);
        inner.add("param", JsonNull.INSTANCE);
        if (code == null) inner.add("code", JsonNull.INSTANCE);
        else inner.addProperty("code", code);
        JsonObject body = new JsonObject();
        body.add("error", inner);
        resp.setStatus(status);
        resp.setContentType("application/json");
        resp.setCharacterEncoding("UTF-8");
        resp.getWriter().write(body.toString());
    }
}
