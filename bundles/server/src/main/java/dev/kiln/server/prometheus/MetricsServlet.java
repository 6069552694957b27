package dev.kiln.server.prometheus;

import dev.kiln.api.engine.EngineStats;
import dev.kiln.api.engine.InferenceEngine;
import dev.kiln.api.engine.ModelDescription;
import dev.kiln.api.speculative.ProposerStats;
import dev.kiln.server.prometheus.PrometheusText.Labels;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

/**
 * {@code GET /metrics}: the engine's gauges and counters ({@link EngineStats}) and the server's latency histograms,
 * named as vLLM names them with the {@code kiln:} prefix and labelled {@code model_name} and {@code engine}, so a
 * Prometheus scrape configuration or Grafana dashboard written for vLLM needs only the prefix changed.
 */
final class MetricsServlet extends HttpServlet {
    private static final long serialVersionUID = 1L;

    private final transient Supplier<InferenceEngine> engine;
    private final transient RequestMetrics requests;

    MetricsServlet(Supplier<InferenceEngine> engine, RequestMetrics requests) {
        this.engine = engine;
        this.requests = requests;
    }

    @Override
    protected void doGet(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        resp.setStatus(200);
        resp.setContentType(PrometheusText.CONTENT_TYPE);
        resp.setHeader("Cache-Control", "no-store");
        resp.getWriter().write(render(engine.get(), requests));
    }

    /** The whole exposition; without an engine the engine's families report zeros. */
    static String render(InferenceEngine engine, RequestMetrics requests) {
        EngineStats s = engine == null ? new EngineStats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) : engine.stats();
        String model = engine == null ? "" : engine.model().map(ModelDescription::id).orElse("");
        Labels labels = Labels.of("model_name", model, "engine", "0");
        Map<Labels, Long> finished = new LinkedHashMap<>();
        requests.finishedRequests().forEach((reason, n) -> finished.put(labels.with("finished_reason", reason), n));
        Map<Labels, Long> drafts = new LinkedHashMap<>();
        Map<Labels, Long> drafted = new LinkedHashMap<>();
        Map<Labels, Long> accepted = new LinkedHashMap<>();
        for (ProposerStats p : engine == null ? List.<ProposerStats>of() : engine.speculativeStats()) {
            Labels byProposer = labels.with("proposer", p.name());
            drafts.put(byProposer, p.drafts());
            drafted.put(byProposer, p.draftTokens());
            accepted.put(byProposer, p.acceptedTokens());
        }
        PrometheusText text = new PrometheusText()
                .gauge("kiln:num_requests_running", "Number of requests in the running batch.", labels, s.running())
                .gauge("kiln:num_requests_waiting", "Number of requests waiting to be admitted.", labels, s.waiting())
                .gauge("kiln:kv_cache_usage_perc", "Fraction of KV cache blocks in use (0 to 1).", labels,
                        s.kvBlocksTotal() == 0 ? 0 : (double) s.kvBlocksUsed() / s.kvBlocksTotal())
                .counter("kiln:prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.", labels,
                        s.prefixCacheQueries())
                .counter("kiln:prefix_cache_hits_total", "Prompt tokens found in the prefix cache.", labels,
                        s.prefixCacheHits())
                .counter("kiln:prompt_tokens_total", "Number of prefill tokens processed.", labels, s.promptTokens())
                .counter("kiln:generation_tokens_total", "Number of generation tokens processed.", labels,
                        s.generationTokens())
                .counter("kiln:spec_decode_num_draft_tokens_total", "Speculative tokens proposed.", labels,
                        s.draftTokensProposed())
                .counter("kiln:spec_decode_num_accepted_tokens_total", "Speculative tokens accepted.", labels,
                        s.draftTokensAccepted())
                .counter("kiln:spec_decode_num_drafts_total", "Verified drafts, by proposer.", drafts)
                .counter("kiln:spec_decode_proposer_draft_tokens_total", "Draft tokens verified, by proposer.", drafted)
                .counter("kiln:spec_decode_proposer_accepted_tokens_total", "Draft tokens accepted, by proposer "
                        + "(acceptance rate = accepted / draft tokens; mean accepted length = 1 + accepted / drafts).", accepted)
                .counter("kiln:request_success_total", "Count of finished requests by finish reason.", finished)
                .histogram("kiln:time_to_first_token_seconds", "Histogram of time to first token in seconds.", labels,
                        requests.timeToFirstToken())
                .histogram("kiln:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", labels,
                        requests.interTokenLatency())
                .histogram("kiln:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", labels,
                        requests.e2eRequestLatency());
        return text.toString();
    }
}
