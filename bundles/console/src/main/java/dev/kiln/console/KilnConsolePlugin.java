package dev.kiln.console;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import dev.kiln.api.KilnProperties;
import dev.kiln.api.engine.EngineStats;
import dev.kiln.api.engine.InferenceEngine;
import dev.kiln.api.engine.ModelDescription;
import dev.kiln.console.engine.EngineSelection;
import dev.kiln.console.engine.ModelFacts;
import dev.kiln.console.engine.Slot;
import dev.kiln.console.history.History;
import dev.kiln.console.history.Reading;
import dev.kiln.console.history.Sample;
import dev.kiln.server.metrics.HistogramSnapshot;
import dev.kiln.server.metrics.ServingMetrics;
import jakarta.servlet.Servlet;
import jakarta.servlet.ServletException;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.URL;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.apache.felix.webconsole.servlet.AbstractServlet;
import org.apache.felix.webconsole.servlet.ServletConstants;
import org.osgi.framework.BundleContext;
import org.osgi.service.cm.ConfigurationAdmin;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;
import org.osgi.service.component.annotations.ReferencePolicyOption;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The Kiln page of the Felix Web Console ({@code /system/console/kiln}): the loaded model, the engine's state, the
 * provider selected for each {@link Slot} with a form to switch it, and live plots of generation throughput, time to
 * first token, speculative acceptance and KV cache usage.
 *
 * <p>A sampler thread reads the engine and the server's metrics once a second into a {@link History} of the last ten
 * minutes; the page's script fetches {@code /system/console/kiln/samples.json} every second and draws the plots on
 * canvases. Switching a provider updates PID {@code dev.kiln.engine} through Config Admin (the engine reloads its
 * model with it); the form is a plain POST protected by {@link CsrfGuard}. The console itself authenticates every
 * request before it reaches this servlet.
 */
@Component(service = Servlet.class, property = {
        ServletConstants.PLUGIN_LABEL + "=" + KilnConsolePlugin.LABEL,
        ServletConstants.PLUGIN_TITLE + "=Kiln",
        ServletConstants.PLUGIN_CATEGORY + "=Kiln",
        ServletConstants.PLUGIN_CSS_REFERENCES + "=/" + KilnConsolePlugin.LABEL + "/res/kiln-console.css",
        KilnProperties.NAME + "=console"})
public final class KilnConsolePlugin extends AbstractServlet {
    static final String LABEL = "kiln";
    private static final long serialVersionUID = 1L;
    private static final Logger LOG = LoggerFactory.getLogger(KilnConsolePlugin.class);
    private static final int HISTORY_SECONDS = 600;
    private static final String SAMPLES_PATH = "/" + LABEL + "/samples.json";
    private static final Map<String, String> RESOURCES = Map.of(
            "/" + LABEL + "/res/kiln-console.js", "kiln-console.js",
            "/" + LABEL + "/res/kiln-console.css", "kiln-console.css");

    @Reference(cardinality = ReferenceCardinality.OPTIONAL, policy = ReferencePolicy.DYNAMIC,
            policyOption = ReferencePolicyOption.GREEDY)
    private volatile InferenceEngine engine;

    @Reference(cardinality = ReferenceCardinality.OPTIONAL, policy = ReferencePolicy.DYNAMIC,
            policyOption = ReferencePolicyOption.GREEDY)
    private volatile ServingMetrics serving;

    @Reference
    private transient ConfigurationAdmin configurationAdmin;

    private transient EngineSelection selection;
    private transient ModelFacts facts;
    private transient CsrfGuard csrf;
    private transient History history;
    private transient ScheduledExecutorService sampler;
    private transient Reading lastReading;
    private transient volatile LiveState live = LiveState.EMPTY;

    /** Created by Declarative Services. */
    public KilnConsolePlugin() {}

    @Activate
    void activate(BundleContext context) {
        selection = new EngineSelection(context, configurationAdmin);
        facts = new ModelFacts(context);
        csrf = new CsrfGuard();
        history = new History(HISTORY_SECONDS);
        sampler = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "kiln-console-sampler");
            t.setDaemon(true);
            return t;
        });
        sampler.scheduleAtFixedRate(this::sample, 0, 1, TimeUnit.SECONDS);
    }

    @Deactivate
    void deactivate() {
        sampler.shutdownNow();
    }

    // ---------------------------------------------------------------- sampling

    private void sample() {
        try {
            InferenceEngine e = engine;
            ServingMetrics m = serving;
            EngineStats stats = e == null ? LiveState.NO_STATS : e.stats();
            HistogramSnapshot ttft = m == null ? null : m.timeToFirstToken();
            Reading reading = new Reading(System.nanoTime(), stats, ttft == null ? 0 : ttft.sum(), ttft == null ? 0 : ttft.count());
            if (lastReading != null) history.add(Sample.between(lastReading, reading, System.currentTimeMillis()));
            lastReading = reading;
            Optional<ModelDescription> model = e == null ? Optional.empty() : e.model();
            OptionalLong parameters = model.map(d -> facts.parameters(Path.of(d.location()))).orElse(OptionalLong.empty());
            live = new LiveState(model, parameters, stats, e != null);
        } catch (RuntimeException | LinkageError ex) {
            // A failing read must not end the schedule (an exception would cancel every later run).
            LOG.warn("the console could not sample the engine: {}", ex.toString());
        }
    }

    // ---------------------------------------------------------------- HTTP

    @Override
    protected void doGet(HttpServletRequest request, HttpServletResponse response) throws ServletException, IOException {
        if (SAMPLES_PATH.equals(request.getPathInfo())) {
            long since = parseLong(request.getParameter("since"), 0);
            response.setStatus(200);
            response.setContentType("application/json");
            response.setCharacterEncoding("UTF-8");
            setNoCache(response);
            response.getWriter().write(json(since).toString());
            return;
        }
        super.doGet(request, response); // a resource of ours, or nothing: the console then renders the page
    }

    @Override
    protected URL getResource(String path) {
        String name = RESOURCES.get(path);
        return name == null ? null : KilnConsolePlugin.class.getResource(name);
    }

    @Override
    protected void doPost(HttpServletRequest request, HttpServletResponse response) throws IOException {
        String refusal = csrf.refusal(request, request.getRemoteUser());
        if (refusal != null) {
            LOG.warn("refused a console change from {}: {}", request.getRemoteAddr(), refusal);
            response.sendError(403, "Refused: " + refusal);
            return;
        }
        Optional<Slot> slot = Slot.byProperty(String.valueOf(request.getParameter("slot")));
        if (slot.isEmpty()) {
            response.sendError(400, "Unknown setting");
            return;
        }
        String tokens = request.getParameter(EngineSelection.NUM_SPECULATIVE_TOKENS);
        try {
            Integer numTokens = tokens == null || tokens.isBlank() ? null : Integer.valueOf(tokens.strip());
            selection.select(slot.get(), request.getParameter("name"), numTokens);
        } catch (IllegalArgumentException e) {
            response.sendError(400, e.getMessage());
            return;
        }
        LOG.info("console user {} selected {} '{}'", request.getRemoteUser(), slot.get().property, request.getParameter("name"));
        // 303: the browser fetches the page with GET, so reloading it does not submit the form again.
        response.setHeader("Location", pluginRoot(request) + "?switched=" + slot.get().property);
        response.setStatus(303);
    }

    @Override
    public void renderContent(HttpServletRequest request, HttpServletResponse response) throws IOException {
        String switched = request.getParameter("switched");
        new Page(response.getWriter(), live, selection, csrf.token(request.getRemoteUser()), appRoot(request),
                pluginRoot(request), Slot.byProperty(String.valueOf(switched)).orElse(null)).write();
    }

    private static String appRoot(HttpServletRequest request) {
        Object root = request.getAttribute(ServletConstants.ATTR_APP_ROOT);
        return root != null ? root.toString() : request.getContextPath();
    }

    private static String pluginRoot(HttpServletRequest request) {
        Object root = request.getAttribute(ServletConstants.ATTR_PLUGIN_ROOT);
        return root != null ? root.toString() : appRoot(request) + "/" + LABEL;
    }

    // ---------------------------------------------------------------- JSON

    /** The samples after {@code since}, and the current facts preformatted for the page's fields. */
    private JsonObject json(long since) {
        LiveState s = live;
        JsonObject out = new JsonObject();
        JsonArray samples = new JsonArray();
        for (Sample sample : history.after(since)) {
            JsonArray row = new JsonArray();
            row.add(sample.epochMillis());
            row.add(number(sample.generationTokensPerSec()));
            row.add(number(sample.promptTokensPerSec()));
            row.add(number(sample.ttftSeconds()));
            row.add(number(sample.acceptanceRate()));
            row.add(number(sample.kvUsage()));
            row.add(sample.running());
            row.add(sample.waiting());
            samples.add(row);
        }
        out.add("samples", samples);
        JsonObject fields = new JsonObject();
        Page.fields(s).forEach(fields::addProperty);
        out.add("fields", fields);
        return out;
    }

    /** A finite value rounded for transport; NaN (nothing measured) becomes null, a gap in the plot. */
    private static JsonElement number(double v) {
        return Double.isFinite(v) ? new JsonPrimitive(Math.round(v * 1e4) / 1e4) : JsonNull.INSTANCE;
    }

    private static long parseLong(String s, long fallback) {
        try {
            return s == null ? fallback : Long.parseLong(s);
        } catch (NumberFormatException e) {
            return fallback;
        }
    }

    /** The page's HTML; every value that comes from outside is escaped. */
    private static final class Page {
        private final PrintWriter out;
        private final LiveState live;
        private final EngineSelection selection;
        private final String token;
        private final String appRoot;
        private final String pluginRoot;
        private final Slot switched;

        Page(PrintWriter out, LiveState live, EngineSelection selection, String token, String appRoot, String pluginRoot,
             Slot switched) {
            this.out = out;
            this.live = live;
            this.selection = selection;
            this.token = token;
            this.appRoot = appRoot;
            this.pluginRoot = pluginRoot;
            this.switched = switched;
        }

        /** The values of the page's live fields by element id, formatted for display. */
        static Map<String, String> fields(LiveState s) {
            Map<String, String> f = new LinkedHashMap<>();
            Optional<ModelDescription> m = s.model();
            f.put("kiln-model-id", m.map(ModelDescription::id).orElse(s.engineBound() ? "none loaded (loading, or failed: see the log)" : "no engine running"));
            f.put("kiln-model-architecture", m.map(ModelDescription::architecture).orElse("–"));
            f.put("kiln-model-location", m.map(ModelDescription::location).orElse("–"));
            f.put("kiln-model-format", m.map(ModelDescription::weightFormat).orElse("–"));
            f.put("kiln-model-parameters", s.parameters().isPresent() ? Units.count(s.parameters().getAsLong()) : "–");
            f.put("kiln-model-memory", m.map(d -> Units.bytes(d.weightBytes())).orElse("–"));
            f.put("kiln-model-context", m.map(d -> d.contextLength() + " tokens").orElse("–"));
            EngineStats st = s.stats();
            f.put("kiln-running", Integer.toString(st.running()));
            f.put("kiln-waiting", Integer.toString(st.waiting()));
            f.put("kiln-kv", st.kvBlocksUsed() + " of " + st.kvBlocksTotal() + " blocks (" + Units.percent(s.kvUsage()) + ")");
            f.put("kiln-prefix-hit", Units.percent(s.prefixHitRate()));
            f.put("kiln-prompt-tokens", Units.count(st.promptTokens()));
            f.put("kiln-generated-tokens", Units.count(st.generationTokens()));
            f.put("kiln-acceptance", Units.percent(s.acceptanceRate()));
            f.put("kiln-finished", Long.toString(st.requestsFinished()));
            return f;
        }

        void write() {
            Map<String, String> f = fields(live);
            out.println("<div id=\"kiln-console\">");
            if (switched != null) {
                out.println("<p class=\"kiln-notice\" id=\"kiln-notice\">" + Html.escape(switched.title)
                        + " switched: the engine reloads the model with it; the figures below follow within seconds.</p>");
            }
            out.println("<h2>Model</h2>");
            table(f, new String[][] {{"Name", "kiln-model-id"}, {"Architecture", "kiln-model-architecture"},
                    {"Folder", "kiln-model-location"}, {"Stored weights", "kiln-model-format"},
                    {"Parameters", "kiln-model-parameters"}, {"Weight memory", "kiln-model-memory"},
                    {"Context length", "kiln-model-context"}});
            out.println("<h2>Engine</h2>");
            table(f, new String[][] {{"Running requests", "kiln-running"}, {"Waiting requests", "kiln-waiting"},
                    {"KV cache", "kiln-kv"}, {"Prefix cache hit rate (since start)", "kiln-prefix-hit"},
                    {"Prompt tokens computed", "kiln-prompt-tokens"}, {"Tokens generated", "kiln-generated-tokens"},
                    {"Speculative acceptance (since start)", "kiln-acceptance"}, {"Requests finished", "kiln-finished"}});
            services();
            plots();
            out.println("<script src=\"" + Html.escape(appRoot + "/" + LABEL + "/res/kiln-console.js") + "\" data-samples=\""
                    + Html.escape(pluginRoot + "/samples.json") + "\"></script>");
            out.println("</div>");
        }

        private void table(Map<String, String> f, String[][] rows) {
            out.println("<table class=\"nicetable kiln-facts\"><tbody>");
            for (String[] row : rows) {
                out.println("<tr><th>" + Html.escape(row[0]) + "</th><td id=\"" + row[1] + "\">" + Html.escape(f.get(row[1])) + "</td></tr>");
            }
            out.println("</tbody></table>");
        }

        private void services() {
            out.println("<h2>Services</h2>");
            out.println("<p class=\"kiln-hint\">Each choice lists the providers registered now (by <code>kiln.name</code>); "
                    + "switching one updates the engine's configuration (<code>dev.kiln.engine</code>) and the engine reloads "
                    + "the model with it. Bundles and configurations stay on the console's own pages.</p>");
            out.println("<table class=\"nicetable kiln-services\"><thead><tr><th>Service</th><th>Active</th><th>Switch to</th></tr></thead><tbody>");
            Map<Slot, String> active;
            try {
                active = selection.active();
            } catch (IllegalStateException e) {
                out.println("<tr><td colspan=\"3\">" + Html.escape(e.getMessage()) + "</td></tr></tbody></table>");
                return;
            }
            for (Slot slot : Slot.values()) {
                String current = active.get(slot);
                var choices = selection.available(slot);
                out.println("<tr><th>" + Html.escape(slot.title) + "</th><td><code id=\"kiln-active-" + slot.property + "\">"
                        + Html.escape(current.isEmpty() ? none(slot) : current) + "</code></td><td>");
                out.println("<form method=\"post\" action=\"" + Html.escape(pluginRoot) + "\" class=\"kiln-switch\">");
                out.println("<input type=\"hidden\" name=\"" + CsrfGuard.FIELD + "\" value=\"" + Html.escape(token) + "\">");
                out.println("<input type=\"hidden\" name=\"slot\" value=\"" + slot.property + "\">");
                out.println("<select name=\"name\" id=\"kiln-select-" + slot.property + "\">");
                if (slot.optional) option("", none(slot), current.isEmpty());
                for (String name : choices) option(name, name, name.equals(current));
                out.println("</select>");
                if (slot == Slot.SPECULATIVE) {
                    out.println("<label>tokens <input type=\"number\" min=\"1\" max=\"16\" name=\""
                            + EngineSelection.NUM_SPECULATIVE_TOKENS + "\" id=\"kiln-speculative-tokens\" size=\"3\"></label>");
                }
                out.println("<button type=\"submit\" id=\"kiln-apply-" + slot.property + "\""
                        + (choices.isEmpty() && !slot.optional ? " disabled" : "") + ">Switch</button>");
                if (choices.isEmpty()) out.println("<span class=\"kiln-hint\">none registered</span>");
                out.println("</form></td></tr>");
            }
            out.println("</tbody></table>");
        }

        private static String none(Slot slot) {
            return slot == Slot.QUANTIZATION ? "(checkpoint's own)" : "(none)";
        }

        private void option(String value, String label, boolean selected) {
            out.println("<option value=\"" + Html.escape(value) + "\"" + (selected ? " selected" : "") + ">" + Html.escape(label) + "</option>");
        }

        private void plots() {
            out.println("<h2>Live</h2>");
            out.println("<p class=\"kiln-hint\">Sampled every second; the last five minutes. <span id=\"kiln-live-status\"></span></p>");
            out.println("<div class=\"kiln-plots\">");
            plot("kiln-plot-throughput", "Generation throughput", "tok/s");
            plot("kiln-plot-ttft", "Time to first token (mean per second)", "ms");
            plot("kiln-plot-acceptance", "Speculative acceptance rate", "%");
            plot("kiln-plot-kv", "KV cache usage", "%");
            out.println("</div>");
        }

        private void plot(String id, String title, String unit) {
            out.println("<figure class=\"kiln-plot\"><figcaption>" + Html.escape(title) + " <span class=\"kiln-plot-value\" id=\""
                    + id + "-value\"></span></figcaption><canvas id=\"" + id + "\" data-unit=\"" + Html.escape(unit)
                    + "\" width=\"480\" height=\"160\"></canvas></figure>");
        }
    }
}
