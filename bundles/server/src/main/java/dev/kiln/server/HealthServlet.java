package dev.kiln.server;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import dev.kiln.api.engine.EngineStats;
import dev.kiln.api.engine.InferenceEngine;
import jakarta.servlet.Servlet;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.util.LinkedHashMap;
import java.util.Map;
import org.osgi.framework.BundleContext;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;
import org.osgi.service.component.annotations.ReferencePolicyOption;
import org.osgi.service.servlet.whiteboard.propertytypes.HttpWhiteboardServletPattern;

/**
 * {@code GET /health}: 200 with a JSON status as soon as the container serves HTTP. Load balancers and the
 * launcher poll it; it never blocks on the engine. The engine, when one is bound, adds its state.
 */
@Component(service = Servlet.class)
@HttpWhiteboardServletPattern("/health")
public class HealthServlet extends HttpServlet {
    private static final long serialVersionUID = 1L;
    private static final Gson GSON = new GsonBuilder().disableHtmlEscaping().create();

    private transient String version;
    private transient String modelPath;

    @Reference(cardinality = ReferenceCardinality.OPTIONAL, policy = ReferencePolicy.DYNAMIC,
            policyOption = ReferencePolicyOption.GREEDY)
    private volatile InferenceEngine engine;

    @Activate
    void activate(BundleContext context) {
        version = context.getBundle().getVersion().toString();
        modelPath = context.getProperty("kiln.model");
    }

    @Override
    protected void doGet(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        Map<String, Object> status = new LinkedHashMap<>();
        status.put("status", "ok");
        status.put("version", version);
        status.put("uptime_seconds", ManagementFactory.getRuntimeMXBean().getUptime() / 1000.0);
        InferenceEngine current = engine;
        Map<String, Object> model = new LinkedHashMap<>();
        model.put("path", modelPath);
        model.put("loaded", current != null && current.model().isPresent());
        status.put("model", model);
        if (current != null) {
            EngineStats s = current.stats();
            status.put("engine", Map.of("running", s.running(), "waiting", s.waiting(),
                    "kv_blocks_used", s.kvBlocksUsed(), "kv_blocks_total", s.kvBlocksTotal()));
        }
        resp.setStatus(200);
        resp.setContentType("application/json");
        resp.setCharacterEncoding("UTF-8");
        resp.setHeader("Cache-Control", "no-store");
        resp.getWriter().write(GSON.toJson(status));
    }
}
