package dev.kiln.spec.mtp;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.sampling.LogitsProcessor;
import dev.kiln.api.sampling.SequenceView;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.speculative.ProposerStats;
import dev.kiln.api.speculative.SpeculativeProposer;
import dev.kiln.api.tokenizer.Tokenizer;
import dev.kiln.engine.EngineSettings;
import dev.kiln.engine.InferenceEngineCore;
import dev.kiln.engine.SpeculationSettings;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Every proposer on the embedded default model: greedy outputs token-identical to plain decoding, acceptance in
 * line with what the models were trained for, reference matching on a repeat request, and twenty proposer swaps
 * under sixteen concurrent streams that fail nothing and change no output.
 */
class DefaultModelSpeculationTest {
    private static final int MAX_TOKENS = 64;
    private static CausalLanguageModel model;
    private static Tokenizer tokenizer;
    private static List<int[]> prompts;
    private static int[][] plain;

    @BeforeAll
    static void plainDecoding() {
        model = DefaultModel.target(EngineSettings.DEFAULT_MAX_NUM_BATCHED_TOKENS);
        tokenizer = DefaultModel.tokenizer();
        prompts = DefaultModel.PROMPTS.stream().map(p -> tokenizer.encode(p, false)).toList();
        try (var engine = engine()) {
            plain = DefaultModel.generate(engine, requests("plain", 0));
        }
    }

    @AfterAll
    static void close() {
        model.close();
    }

    private static InferenceEngineCore engine() {
        return new InferenceEngineCore(model, EngineSettings.defaults().withKvCacheMemory(64L << 20), null, List.of());
    }

    /** One request per prompt; the repeat request carries its text as reference. */
    private static List<GenerationRequest> requests(String prefix, int round) {
        int[] reference = tokenizer.encode(DefaultModel.TEXT, false);
        List<GenerationRequest> out = new ArrayList<>();
        for (int i = 0; i < prompts.size(); i++) {
            boolean repeat = i == prompts.size() - 1;
            out.add(DefaultModel.greedy(prefix + "-" + round + "-" + i, prompts.get(i), MAX_TOKENS, repeat ? reference : null));
        }
        return out;
    }

    @Test
    void everyProposerLeavesGreedyOutputsTokenIdenticalToPlainDecoding() {
        for (String name : List.of("reference", "draft-model", "mtp")) {
            for (int k : new int[] {1, 3}) {
                try (var engine = engine()) {
                    engine.setSpeculation(DefaultModel.proposer(name), new SpeculationSettings(name, k, 16));
                    if (name.equals("draft-model")) DefaultModel.awaitDrafts(engine, prompts.getFirst());
                    int[][] out = DefaultModel.generate(engine, requests(name, k));
                    for (int i = 0; i < out.length; i++) {
                        assertArrayEquals(plain[i], out[i], name + " k=" + k + " prompt " + i);
                    }
                    ProposerStats stats = engine.speculativeStats().getFirst();
                    System.out.printf("default model, %s, k=%d: acceptance %.3f, %.2f tokens per step%n", name, k,
                            stats.acceptanceRate(), stats.meanAcceptedLength());
                    if (k == 1) {
                        // One draft token: what the models were trained to agree on (MTP 86.6%, draft 77.7% on
                        // held-out greedy text; these prompts are less predictable).
                        assertTrue(stats.acceptanceRate() > 0.6, name + " accepts " + stats);
                    }
                }
            }
        }
    }

    /**
     * A request's own logits processor (as JSON mode's) under speculation: verification shows it the sequence exactly
     * as plain decoding would at each drafted position, so greedy outputs stay token-identical to plain decoding with
     * the same processor; the processor itself changes the outputs.
     */
    @Test
    void aRequestsOwnProcessorLeavesGreedyOutputsIdenticalUnderEveryProposer() {
        int[][] constrainedPlain;
        try (var engine = engine()) {
            constrainedPlain = DefaultModel.generate(engine, constrained("plain"));
        }
        boolean changed = false;
        for (int i = 0; i < plain.length; i++) changed |= !java.util.Arrays.equals(plain[i], constrainedPlain[i]);
        assertTrue(changed, "the processor changes what greedy decoding produces");
        for (String name : List.of("reference", "draft-model", "mtp")) {
            try (var engine = engine()) {
                engine.setSpeculation(DefaultModel.proposer(name), new SpeculationSettings(name, 3, 16));
                if (name.equals("draft-model")) DefaultModel.awaitDrafts(engine, prompts.getFirst());
                int[][] out = DefaultModel.generate(engine, constrained(name));
                for (int i = 0; i < out.length; i++) assertArrayEquals(constrainedPlain[i], out[i], name + " prompt " + i);
                assertTrue(engine.speculativeStats().getFirst().acceptedTokens() > 0, name + " accepted drafts");
            }
        }
    }

    /** The requests of {@link #requests}, each with its own processor that forbids repeating the last output token. */
    private static List<GenerationRequest> constrained(String prefix) {
        List<GenerationRequest> out = new ArrayList<>();
        for (GenerationRequest r : requests(prefix, 0)) {
            LogitsProcessor noRepeat = new LogitsProcessor() {
                @Override
                public boolean appliesTo(SequenceView sequence) {
                    return true;
                }

                @Override
                public void process(float[] logits, SequenceView sequence) {
                    int[] output = sequence.outputTokens();
                    if (output.length > 0) logits[output[output.length - 1]] = Float.NEGATIVE_INFINITY;
                }
            };
            out.add(new GenerationRequest(r.id(), r.promptTokens(), r.sampling(), r.maxTokens(), r.minTokens(), r.stopTokenIds(),
                    r.ignoreEos(), r.promptLogprobs(), r.reference(), List.of(noRepeat)));
        }
        return out;
    }

    /**
     * A request whose answer repeats a text it passes as reference. The default model is far too small to follow
     * "repeat this text", so the text is one it is known to produce: its earlier answer to the same prompt (the
     * "regenerate" or "continue editing" request of a chat client).
     */
    @Test
    void referenceMatchingAcceptsMostTokensOfAnAnswerThatRepeatsTheReference() {
        int p = 2; // "The report of the grand jury ..."
        int[] previousAnswer = plain[p];
        try (var engine = engine()) {
            engine.setSpeculation(DefaultModel.proposer("reference"), new SpeculationSettings("reference", 4, 16));
            var c = new Harness.Collector();
            engine.submit(DefaultModel.greedy("regenerate", prompts.get(p), MAX_TOKENS, previousAnswer), c);
            assertArrayEquals(previousAnswer, c.await().tokens());
            ProposerStats stats = engine.speculativeStats().getFirst();
            System.out.printf("answer repeating its reference: %s, %d steps for %d tokens%n", stats, c.events().size(),
                    c.tokens().length);
            assertTrue(stats.acceptanceRate() > 0.9, "drafts from the reference are accepted: " + stats);
            assertTrue(c.events().size() * 4 <= c.tokens().length + 4, "about five tokens per step (4 drafts + 1)");
        }
    }

    @Test
    void twentySwapsUnderSixteenConcurrentStreamsFailNothingAndChangeNoOutput() throws InterruptedException {
        List<String> names = List.of("mtp", "reference", "draft-model", "", "mtp", "draft-model", "reference");
        try (var engine = engine()) {
            var proposers = new java.util.HashMap<String, SpeculativeProposer>();
            for (String n : names) if (!n.isEmpty()) proposers.computeIfAbsent(n, DefaultModel::proposer);
            AtomicInteger events = new AtomicInteger();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Thread swapper = Thread.ofPlatform().start(() -> {
                try {
                    for (int i = 0; i < 20; i++) {
                        int seen = events.get();
                        while (events.get() < seen + 32) LockSupport.parkNanos(500_000);
                        String name = names.get(i % names.size());
                        engine.setSpeculation(name.isEmpty() ? null : proposers.get(name),
                                new SpeculationSettings(name.isEmpty() ? null : name, 1 + i % 4, 32));
                        // A proposer's first turn lasts until it has drafted (a draft model's session loads in the
                        // background, on a loaded machine for longer than 32 events), so every one is exercised.
                        long deadline = System.nanoTime() + 60_000_000_000L;
                        while (!name.isEmpty() && engine.speculativeStats().stream().noneMatch(p -> p.name().equals(name))
                                && System.nanoTime() < deadline) {
                            LockSupport.parkNanos(1_000_000);
                        }
                    }
                } catch (Throwable t) {
                    failure.set(t);
                }
            });
            int round = 0;
            while (swapper.isAlive()) {
                List<GenerationRequest> requests = new ArrayList<>();
                for (int i = 0; i < 16; i++) requests.add(requests("swap", round).get(i % prompts.size()));
                Harness.Collector[] c = new Harness.Collector[16];
                for (int i = 0; i < 16; i++) {
                    c[i] = new Harness.Collector() {
                        @Override
                        public synchronized void onTokens(TokenEvent event) {
                            events.incrementAndGet();
                            super.onTokens(event);
                        }
                    };
                    engine.submit(copy(requests.get(i), "swap-" + round + "-" + i), c[i]);
                }
                for (int i = 0; i < 16; i++) {
                    assertArrayEquals(plain[i % prompts.size()], c[i].await().tokens(), "round " + round + " stream " + i);
                }
                round++;
            }
            swapper.join();
            assertNull(failure.get());
            System.out.printf("%d rounds of 16 streams across 20 swaps: %s%n", round, engine.speculativeStats());
            assertEquals(3, engine.speculativeStats().size(), "every proposer drafted");
        }
    }

    private static GenerationRequest copy(GenerationRequest r, String id) {
        return new GenerationRequest(id, r.promptTokens(), r.sampling(), r.maxTokens(), r.minTokens(), r.stopTokenIds(),
                r.ignoreEos(), r.promptLogprobs(), r.reference());
    }
}
