package dev.kiln.server.prometheus;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.engine.EngineStats;
import dev.kiln.api.engine.GenerationHandle;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.InferenceEngine;
import dev.kiln.api.engine.ModelDescription;
import dev.kiln.api.engine.TokenListener;
import dev.kiln.server.prometheus.RequestMetrics.Finish;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

class MetricsServletTest {
    /** One sample line: name, optional labels, value. */
    private static final Pattern SAMPLE = Pattern.compile("([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{(.*)})? (\\S+)");

    private static InferenceEngine engine(EngineStats stats, String model) {
        return new InferenceEngine() {
            public GenerationHandle submit(GenerationRequest request, TokenListener listener) {
                throw new UnsupportedOperationException();
            }

            public Optional<ModelDescription> model() {
                return Optional.of(new ModelDescription(model, "qwen2", "/m", "bfloat16", 1000, 256));
            }

            public EngineStats stats() {
                return stats;
            }
        };
    }

    /** Parses the exposition strictly enough that a malformed line fails the test. */
    private static Map<String, Double> parse(String text, Map<String, String> types) {
        Map<String, Double> samples = new LinkedHashMap<>();
        for (String line : text.split("\n")) {
            if (line.startsWith("# TYPE ")) {
                String[] p = line.split(" ");
                types.put(p[2], p[3]);
            } else if (!line.startsWith("# HELP ")) {
                Matcher m = SAMPLE.matcher(line);
                assertTrue(m.matches(), "malformed sample line: " + line);
                String v = m.group(4);
                samples.put(m.group(1) + (m.group(2) == null ? "" : m.group(2)),
                        v.equals("+Inf") ? Double.POSITIVE_INFINITY : Double.parseDouble(v));
            }
        }
        return samples;
    }

    @Test
    void exposesVllmNamedFamiliesWithTheEngineStatsAndTheServerHistograms() {
        RequestMetrics requests = new RequestMetrics();
        for (int r = 0; r < 3; r++) {
            RequestTimer t = requests.start(0);
            t.choices(1);
            t.tokens(0, 1, 50_000_000L * (r + 1));
            t.tokens(0, 1, 50_000_000L * (r + 1) + 2_000_000);
            t.finished(0, r == 2 ? Finish.STOP : Finish.LENGTH, 400_000_000L);
        }
        EngineStats stats = new EngineStats(2, 1, 16, 64, 100, 40, 500, 77, 30, 12, 3);
        Map<String, String> types = new LinkedHashMap<>();
        Map<String, Double> s = parse(MetricsServlet.render(engine(stats, "tiny \"q\""), requests), types);
        String l = "{model_name=\"tiny \\\"q\\\"\",engine=\"0\"}";

        assertEquals(2, s.get("kiln:num_requests_running" + l));
        assertEquals(1, s.get("kiln:num_requests_waiting" + l));
        assertEquals(0.25, s.get("kiln:kv_cache_usage_perc" + l));
        assertEquals(100, s.get("kiln:prefix_cache_queries_total" + l));
        assertEquals(40, s.get("kiln:prefix_cache_hits_total" + l));
        assertEquals(500, s.get("kiln:prompt_tokens_total" + l));
        assertEquals(77, s.get("kiln:generation_tokens_total" + l));
        assertEquals(30, s.get("kiln:spec_decode_num_draft_tokens_total" + l));
        assertEquals(12, s.get("kiln:spec_decode_num_accepted_tokens_total" + l));
        String base = l.substring(0, l.length() - 1);
        assertEquals(2, s.get("kiln:request_success_total" + base + ",finished_reason=\"length\"}"));
        assertEquals(1, s.get("kiln:request_success_total" + base + ",finished_reason=\"stop\"}"));

        assertEquals("gauge", types.get("kiln:kv_cache_usage_perc"));
        assertEquals("counter", types.get("kiln:prompt_tokens"));
        for (String h : List.of("kiln:time_to_first_token_seconds", "kiln:inter_token_latency_seconds",
                "kiln:e2e_request_latency_seconds")) {
            assertEquals("histogram", types.get(h));
            List<Double> buckets = new ArrayList<>();
            s.forEach((k, v) -> {
                if (k.startsWith(h + "_bucket")) buckets.add(v);
            });
            for (int i = 1; i < buckets.size(); i++) assertTrue(buckets.get(i) >= buckets.get(i - 1), h + " buckets must be cumulative");
            assertEquals(s.get(h + "_count" + l), buckets.getLast(), h + ": the +Inf bucket holds every observation");
        }
        assertEquals(3, s.get("kiln:time_to_first_token_seconds_count" + l));
        assertEquals(0.05 + 0.10 + 0.15, s.get("kiln:time_to_first_token_seconds_sum" + l), 1e-9);
        // TTFT 0.05 s lies in the le="0.06" bucket, 0.10 in le="0.1", 0.15 in le="0.25".
        assertEquals(1, s.get("kiln:time_to_first_token_seconds_bucket" + base + ",le=\"0.06\"}"));
        assertEquals(2, s.get("kiln:time_to_first_token_seconds_bucket" + base + ",le=\"0.1\"}"));
        assertEquals(3, s.get("kiln:inter_token_latency_seconds_count" + l));
        assertEquals(3, s.get("kiln:inter_token_latency_seconds_bucket" + base + ",le=\"0.0025\"}"));
    }

    @Test
    void speculativeCountersAreReportedPerProposer() {
        EngineStats stats = new EngineStats(0, 0, 0, 64, 0, 0, 0, 0, 30, 12, 0);
        InferenceEngine speculating = new InferenceEngine() {
            public GenerationHandle submit(GenerationRequest request, TokenListener listener) {
                throw new UnsupportedOperationException();
            }

            public Optional<ModelDescription> model() {
                return Optional.of(new ModelDescription("m", "deepseek_v3", "/m", "bfloat16", 1000, 256));
            }

            public EngineStats stats() {
                return stats;
            }

            @Override
            public java.util.List<dev.kiln.api.speculative.ProposerStats> speculativeStats() {
                return java.util.List.of(new dev.kiln.api.speculative.ProposerStats("mtp", 10, 20, 9),
                        new dev.kiln.api.speculative.ProposerStats("reference", 2, 8, 3));
            }
        };
        Map<String, String> types = new LinkedHashMap<>();
        Map<String, Double> s = parse(MetricsServlet.render(speculating, new RequestMetrics()), types);
        String mtp = "{model_name=\"m\",engine=\"0\",proposer=\"mtp\"}";
        String reference = "{model_name=\"m\",engine=\"0\",proposer=\"reference\"}";
        assertEquals(10, s.get("kiln:spec_decode_num_drafts_total" + mtp));
        assertEquals(20, s.get("kiln:spec_decode_proposer_draft_tokens_total" + mtp));
        assertEquals(9, s.get("kiln:spec_decode_proposer_accepted_tokens_total" + mtp));
        assertEquals(3, s.get("kiln:spec_decode_proposer_accepted_tokens_total" + reference));
        assertEquals("counter", types.get("kiln:spec_decode_num_drafts"));
    }

    @Test
    void withoutAnEngineTheEngineFamiliesReportZero() {
        Map<String, Double> s = parse(MetricsServlet.render(null, new RequestMetrics()), new LinkedHashMap<>());
        assertEquals(0, s.get("kiln:kv_cache_usage_perc{model_name=\"\",engine=\"0\"}"));
        assertEquals(0, s.get("kiln:e2e_request_latency_seconds_count{model_name=\"\",engine=\"0\"}"));
    }

    @Test
    void numbersAreWrittenTheWayPrometheusReadsThem() {
        assertEquals("+Inf", PrometheusText.number(Double.POSITIVE_INFINITY));
        assertEquals("NaN", PrometheusText.number(Double.NaN));
        assertEquals("5", PrometheusText.number(5.0));
        assertEquals("0.025", PrometheusText.number(0.025));
    }
}
