package dev.kiln.server.security;

import dev.kiln.api.KilnProperties;
import jakarta.servlet.Filter;
import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.ServletRequest;
import jakarta.servlet.ServletResponse;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import org.osgi.framework.BundleContext;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.servlet.whiteboard.propertytypes.HttpWhiteboardFilterPattern;

/**
 * Cross-origin access to the API for browser clients, off unless origins are configured: Config Admin PID
 * {@code dev.kiln.server} property {@code allowed-origins}, or {@code kiln serve --allowed-origins} (framework
 * property {@code kiln.allowed-origins}); {@code *} allows any origin. Without it no CORS header is ever sent, so
 * browsers keep other sites' scripts from reading the API's answers.
 *
 * <p>Preflight requests from an allowed origin are answered here, before the API key check (browsers send no
 * {@code Authorization} header on a preflight); from any other origin they are refused with 403.
 */
@Component(service = Filter.class, configurationPid = ApiKeyFilter.PID,
        property = {KilnProperties.NAME + "=cors", "service.ranking:Integer=200"})
@HttpWhiteboardFilterPattern({"/v1/*", "/tokenize", "/detokenize", "/health"})
public final class CorsFilter implements Filter {
    /** Framework property with comma-separated allowed origins, set by the launcher. */
    public static final String ORIGINS_PROPERTY = "kiln.allowed-origins";
    private static final String ALLOWED_METHODS = "GET, POST, OPTIONS";
    private static final String PREFLIGHT_MAX_AGE = "600";

    private volatile Set<String> origins = Set.of();

    /** Created by Declarative Services. */
    public CorsFilter() {}

    @Activate
    void activate(BundleContext context, Map<String, Object> properties) {
        configure(Settings.list(properties, "allowed-origins", context, ORIGINS_PROPERTY));
    }

    void configure(List<String> allowed) {
        // Origins compare as browsers send them: scheme://host[:port], without a trailing slash.
        origins = allowed.stream().map(o -> o.endsWith("/") ? o.substring(0, o.length() - 1) : o).collect(Collectors.toUnmodifiableSet());
    }

    @Override
    public void doFilter(ServletRequest request, ServletResponse response, FilterChain chain) throws IOException, ServletException {
        HttpServletRequest req = (HttpServletRequest) request;
        HttpServletResponse resp = (HttpServletResponse) response;
        String origin = req.getHeader("Origin");
        Set<String> allowed = origins;
        if (allowed.isEmpty() || origin == null) {
            chain.doFilter(request, response);
            return;
        }
        boolean permitted = allowed.contains("*") || allowed.contains(origin);
        boolean preflight = "OPTIONS".equals(req.getMethod()) && req.getHeader("Access-Control-Request-Method") != null;
        resp.addHeader("Vary", "Origin");
        if (preflight) {
            if (!permitted) {
                resp.setStatus(403);
                return;
            }
            resp.setHeader("Access-Control-Allow-Origin", allowed.contains("*") ? "*" : origin);
            resp.setHeader("Access-Control-Allow-Methods", ALLOWED_METHODS);
            String headers = req.getHeader("Access-Control-Request-Headers");
            if (headers != null && !headers.isBlank()) resp.setHeader("Access-Control-Allow-Headers", headers);
            resp.setHeader("Access-Control-Max-Age", PREFLIGHT_MAX_AGE);
            resp.setStatus(204);
            return;
        }
        if (permitted) resp.setHeader("Access-Control-Allow-Origin", allowed.contains("*") ? "*" : origin);
        chain.doFilter(request, response);
    }
}
