package dev.kiln.spec.mtp;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.speculative.ProposerStats;
import dev.kiln.api.speculative.SpeculativeProposer;
import dev.kiln.api.tokenizer.Tokenizer;
import dev.kiln.engine.EngineSettings;
import dev.kiln.engine.InferenceEngineCore;
import dev.kiln.engine.SpeculationSettings;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

/**
 * Output tokens per second of greedy decoding on the embedded default model with and without each proposer, at
 * concurrency 1 and 8, with acceptance rates. Runs only when asked ({@code -Dkiln.bench=true}); prints a Markdown
 * table. Configurations alternate within each repetition, so that a machine shared with others slows all of them
 * alike; the best repetition of each counts. Every speculative output is checked against plain decoding.
 *
 * <pre>
 * ./mvnw -o test -f bundles/spec-mtp/pom.xml -Dtest=SpeculativeBenchmark -Dkiln.bench=true \
 *     [-Dkiln.bench.tokens=128] [-Dkiln.bench.repetitions=3] [-Dkiln.bench.concurrency=1,8]
 * </pre>
 *
 * Workloads: "open", five prompts (chat, prose, scripture, news) answered freely; "regenerate", the same prompts
 * asked again with the earlier answer as reference (what a chat client's regenerate or an edit of a long answer
 * sends): the case reference matching is for.
 */
@EnabledIfSystemProperty(named = "kiln.bench", matches = "true")
class SpeculativeBenchmark {
    private static final int TOKENS = Integer.getInteger("kiln.bench.tokens", 128);
    private static final int REPETITIONS = Integer.getInteger("kiln.bench.repetitions", 3);
    private static final int[] CONCURRENCY = java.util.Arrays.stream(
            System.getProperty("kiln.bench.concurrency", "1,8").split(",")).mapToInt(s -> Integer.parseInt(s.trim())).toArray();

    /** One configuration: a proposer (or none) and k. */
    private record Config(String proposer, int k, boolean regenerate) {
        String label() {
            String workload = regenerate ? "regenerate" : "open";
            return workload + ", " + (proposer == null ? "none" : proposer + " k=" + k);
        }
    }

    /** The best of the repetitions. */
    private static final class Result {
        double tokensPerSecond;
        ProposerStats stats;
    }

    @Test
    void tokensPerSecondWithAndWithoutEachProposer() {
        List<Config> configs = List.of(
                new Config(null, 0, false),
                new Config("reference", 4, false),
                new Config("draft-model", 1, false),
                new Config("draft-model", 2, false),
                new Config("draft-model", 3, false),
                new Config("mtp", 1, false),
                new Config("mtp", 2, false),
                new Config("mtp", 3, false),
                new Config(null, 0, true),
                new Config("reference", 4, true),
                new Config("reference", 8, true));
        Tokenizer tokenizer = DefaultModel.tokenizer();
        List<int[]> prompts = DefaultModel.PROMPTS.subList(0, 5).stream().map(p -> tokenizer.encode(p, false)).toList();
        try (CausalLanguageModel model = DefaultModel.target(EngineSettings.DEFAULT_MAX_NUM_BATCHED_TOKENS)) {
            Map<String, SpeculativeProposer> proposers = new LinkedHashMap<>();
            for (String name : List.of("reference", "draft-model", "mtp")) proposers.put(name, DefaultModel.proposer(name));
            int[][] plain;
            try (var engine = engine(model)) {
                plain = DefaultModel.generate(engine, requests(prompts, null, 0, "plain"));
            }
            StringBuilder table = new StringBuilder();
            table.append("| workload, proposer | concurrency | output tok/s | speedup | acceptance | tokens per step |\n");
            table.append("|---|---|---|---|---|---|\n");
            for (int concurrency : CONCURRENCY) {
                Map<Config, Result> results = new LinkedHashMap<>();
                for (int rep = 0; rep < REPETITIONS; rep++) {
                    for (Config config : configs) {
                        Result r = results.computeIfAbsent(config, c -> new Result());
                        try (var engine = engine(model)) {
                            if (config.proposer() != null) {
                                engine.setSpeculation(proposers.get(config.proposer()),
                                        new SpeculationSettings(config.proposer(), config.k(), 64));
                                if (config.proposer().equals("draft-model")) DefaultModel.awaitDrafts(engine, prompts.get(0));
                            }
                            // Warm-up: the same work once, unmeasured (JIT, caches).
                            run(engine, prompts, plain, config, concurrency);
                            long before = System.nanoTime();
                            int produced = run(engine, prompts, plain, config, concurrency);
                            double seconds = (System.nanoTime() - before) / 1e9;
                            r.tokensPerSecond = Math.max(r.tokensPerSecond, produced / seconds);
                            if (config.proposer() != null) r.stats = engine.speculativeStats().getFirst();
                        }
                    }
                }
                Map<Boolean, Double> baseline = new LinkedHashMap<>();
                results.forEach((c, r) -> {
                    if (c.proposer() == null) baseline.put(c.regenerate(), r.tokensPerSecond);
                });
                results.forEach((c, r) -> table.append(String.format(Locale.ROOT, "| %s | %d | %.1f | %.2fx | %s | %s |%n",
                        c.label(), concurrency, r.tokensPerSecond, r.tokensPerSecond / baseline.get(c.regenerate()),
                        r.stats == null ? "" : String.format(Locale.ROOT, "%.1f%%", 100 * r.stats.acceptanceRate()),
                        r.stats == null ? "1" : String.format(Locale.ROOT, "%.2f", r.stats.meanAcceptedLength()))));
            }
            System.out.printf("%nDefault model, greedy, %d output tokens per request, best of %d, %d CPU threads:%n%s%n",
                    TOKENS, REPETITIONS, 2, table);
        }
    }

    private static InferenceEngineCore engine(CausalLanguageModel model) {
        return new InferenceEngineCore(model, EngineSettings.defaults().withKvCacheMemory(64L << 20), null, List.of());
    }

    private static List<GenerationRequest> requests(List<int[]> prompts, int[][] references, int round, String prefix) {
        List<GenerationRequest> out = new ArrayList<>();
        for (int i = 0; i < prompts.size(); i++) {
            out.add(DefaultModel.greedy(prefix + "-" + round + "-" + i, prompts.get(i), TOKENS,
                    references == null ? null : references[i]));
        }
        return out;
    }

    /**
     * Generates every prompt's answer once, {@code concurrency} requests at a time (more prompts are cycled to fill
     * a wave), checks each against plain decoding, and returns the tokens generated.
     */
    private static int run(InferenceEngineCore engine, List<int[]> prompts, int[][] plain, Config config, int concurrency) {
        int produced = 0;
        int total = Math.max(prompts.size(), concurrency);
        for (int start = 0; start < total; start += concurrency) {
            List<GenerationRequest> wave = new ArrayList<>();
            List<Integer> which = new ArrayList<>();
            for (int i = start; i < Math.min(total, start + concurrency); i++) {
                int p = i % prompts.size();
                which.add(p);
                wave.add(DefaultModel.greedy("b-" + System.nanoTime() + "-" + i, prompts.get(p), TOKENS,
                        config.regenerate() ? plain[p] : null));
            }
            int[][] out = DefaultModel.generate(engine, wave);
            for (int i = 0; i < out.length; i++) {
                assertArrayEquals(plain[which.get(i)], out[i], config.label() + " prompt " + which.get(i));
                produced += out[i].length;
            }
        }
        return produced;
    }
}
