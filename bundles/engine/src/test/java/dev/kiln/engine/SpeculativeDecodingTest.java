package dev.kiln.engine;

import static dev.kiln.engine.ConcurrentGreedyTest.KV_MEMORY;
import static dev.kiln.engine.ConcurrentGreedyTest.greedy;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.engine.EngineStats;
import dev.kiln.api.engine.FinishReason;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.api.engine.TokenLogprobs;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.api.speculative.DraftRequest;
import dev.kiln.api.speculative.ProposerStats;
import dev.kiln.engine.testing.Collector;
import dev.kiln.engine.testing.Fixtures;
import dev.kiln.engine.testing.ScriptedProposer;
import dev.kiln.engine.testing.TestEngine;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Drafts verified in the batched forward: greedy outputs never change whatever the drafts are, accepted tokens come
 * out several per event, rejected tokens give their KV slots back, and speculation coexists with continuous
 * batching, chunked prefill, the prefix cache, preemption, log-probabilities, stop tokens and length limits.
 */
class SpeculativeDecodingTest {
    private static SpeculationSettings scripted(int k) {
        return new SpeculationSettings("scripted", k, 16);
    }

    private static int[][] prompts(String fixture) {
        return new int[][] {Fixtures.prompt(fixture, 0), Fixtures.prompt(fixture, 1)};
    }

    private static int[][] continuations(String fixture) {
        return new int[][] {Fixtures.greedyContinuation(fixture, 0), Fixtures.greedyContinuation(fixture, 1)};
    }

    private static EngineSettings settings() {
        return EngineSettings.defaults().withKvCacheMemory(KV_MEMORY);
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny", "qwen2-long"})
    void perfectDraftsAreAllAcceptedAndComeOutSeveralTokensPerEvent(String fixture) {
        int[][] prompts = prompts(fixture);
        int[][] expected = continuations(fixture);
        try (TestEngine engine = TestEngine.start(fixture, settings())) {
            var proposer = ScriptedProposer.oracle(prompts, expected, 0, engine.model().vocabSize());
            engine.core().setSpeculation(proposer, scripted(3));
            int events = 0;
            for (int p = 0; p < 2; p++) {
                Collector c = engine.submit(greedy("r" + p, prompts[p], expected[p].length)).await();
                assertNull(c.error());
                assertArrayEquals(expected[p], c.tokens());
                // The prefill's token, then 3 accepted draft tokens plus the target's next one per step.
                List<TokenEvent> got = c.events();
                int produced = 0;
                for (int e = 0; e < got.size(); e++) {
                    int size = got.get(e).tokens().length;
                    assertEquals(e == 0 ? 1 : Math.min(4, expected[p].length - produced), size, "event " + e);
                    produced += size;
                }
                events += got.size();
            }
            engine.awaitIdle();
            EngineStats stats = engine.core().stats();
            long generated = expected[0].length + expected[1].length;
            assertEquals(generated, stats.generationTokens());
            assertEquals(generated - events, stats.draftTokensAccepted(), "every token after the first of a step was drafted");
            assertEquals(stats.draftTokensProposed(), stats.draftTokensAccepted());
            ProposerStats ps = engine.core().speculativeStats().getFirst();
            assertEquals("scripted", ps.name());
            assertEquals(events - 2, ps.drafts());
            assertEquals(1.0, ps.acceptanceRate());
            assertEquals(0, stats.kvBlocksUsed());
            assertEquals(List.of(), proposer.violations());
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny", "qwen2-long"})
    void wrongDraftTokensAreRejectedAndTheOutputDoesNotChange(String fixture) {
        int[][] prompts = prompts(fixture);
        int[][] expected = continuations(fixture);
        try (TestEngine engine = TestEngine.start(fixture, settings())) {
            var proposer = ScriptedProposer.oracle(prompts, expected, 3, engine.model().vocabSize());
            engine.core().setSpeculation(proposer, scripted(4));
            Collector[] c = {engine.submit(greedy("a", prompts[0], expected[0].length)),
                    engine.submit(greedy("b", prompts[1], expected[1].length))};
            for (int p = 0; p < 2; p++) {
                assertNull(c[p].await().error());
                assertArrayEquals(expected[p], c[p].tokens());
                assertTrue(c[p].events().stream().anyMatch(e -> e.tokens().length > 1), "some drafts were accepted");
            }
            engine.awaitIdle();
            EngineStats stats = engine.core().stats();
            assertTrue(stats.draftTokensAccepted() > 0);
            assertTrue(stats.draftTokensAccepted() < stats.draftTokensProposed(), "every third draft token is wrong");
            assertEquals(0, stats.kvBlocksUsed());
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny"})
    void concurrentRequestsWithDraftsEachProduceTheReferenceContinuation(String fixture) throws InterruptedException {
        int[][] prompts = prompts(fixture);
        int[][] expected = continuations(fixture);
        int n = 24;
        var settings = settings().withMaxNumSeqs(12);
        try (TestEngine engine = TestEngine.start(fixture, settings)) {
            engine.core().setSpeculation(ScriptedProposer.oracle(prompts, expected, 4, engine.model().vocabSize()),
                    new SpeculationSettings("scripted", 3, 64));
            Collector[] collectors = new Collector[n];
            long[] gaps = new SplittableRandom(7).longs(n, 0, 2_000_000).toArray();
            Thread submitter = Thread.ofPlatform().start(() -> {
                for (int i = 0; i < n; i++) {
                    LockSupport.parkNanos(gaps[i]);
                    collectors[i] = engine.submit(greedy("r" + i, prompts[i % 2], expected[i % 2].length));
                }
            });
            submitter.join();
            for (int i = 0; i < n; i++) {
                Collector c = collectors[i].await();
                assertNull(c.error());
                assertArrayEquals(expected[i % 2], c.tokens(), "request " + i);
            }
            engine.awaitIdle();
            assertEquals(0, engine.core().stats().kvBlocksUsed());
            assertTrue(engine.core().stats().draftTokensAccepted() > 0);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-tiny"})
    void preemptedSequencesWithDraftsStillProduceTheirReferenceTokens(String fixture) {
        int[][] prompts = prompts(fixture);
        int[][] expected = continuations(fixture);
        int n = 12;
        long blockBytes;
        try (var model = Fixtures.build(fixture, 16)) {
            blockBytes = model.kvCacheSpec().bytesPerToken() * EngineSettings.DEFAULT_BLOCK_SIZE;
        }
        var settings = EngineSettings.defaults().withKvCacheMemory(8 * blockBytes).withMaxNumSeqs(n)
                .withMaxNumBatchedTokens(64);
        try (TestEngine engine = TestEngine.start(fixture, settings)) {
            engine.core().setSpeculation(ScriptedProposer.oracle(prompts, expected, 5, engine.model().vocabSize()),
                    new SpeculationSettings("scripted", 4, 64));
            Collector[] collectors = new Collector[n];
            for (int i = 0; i < n; i++) collectors[i] = engine.submit(greedy("r" + i, prompts[i % 2], expected[i % 2].length));
            for (int i = 0; i < n; i++) {
                assertNull(collectors[i].await().error());
                assertArrayEquals(expected[i % 2], collectors[i].tokens(), "request " + i);
            }
            engine.awaitIdle();
            assertTrue(engine.core().preemptions() > 0, "the cache was meant to run out");
            assertTrue(engine.core().stats().draftTokensAccepted() > 0);
            assertEquals(0, engine.core().stats().kvBlocksUsed());
        }
    }

    @Test
    void sequencesDoNotDraftWhileTheirPromptIsPrefilledInChunks() {
        String fixture = "qwen2-long"; // prompts of 600 and 97 tokens, prefilled 32 tokens a step
        int[][] prompts = prompts(fixture);
        int[][] expected = continuations(fixture);
        try (TestEngine engine = TestEngine.start(fixture, settings().withMaxNumBatchedTokens(32))) {
            var proposer = ScriptedProposer.oracle(prompts, expected, 3, engine.model().vocabSize());
            engine.core().setSpeculation(proposer, scripted(3));
            Collector shortRequest = engine.submit(greedy("short", prompts[1], expected[1].length));
            Collector longRequest = engine.submit(greedy("long", prompts[0], expected[0].length));
            assertArrayEquals(expected[1], shortRequest.await().tokens());
            assertArrayEquals(expected[0], longRequest.await().tokens());
            for (DraftRequest r : proposer.requests()) {
                int promptLength = r.tokens().length >= prompts[0].length ? prompts[0].length : prompts[1].length;
                assertTrue(r.tokens().length > promptLength, "drafting only once the prompt is computed");
            }
            assertTrue(proposer.requests().stream().anyMatch(r -> r.tokens().length > 600), "the long one drafted");
        }
    }

    @Test
    void aCachedPrefixAndDraftsTogetherChangeNothing() {
        String fixture = "qwen2-tiny";
        int[][] prompts = prompts(fixture);
        int[][] expected = continuations(fixture);
        try (TestEngine engine = TestEngine.start(fixture, settings())) {
            engine.core().setSpeculation(ScriptedProposer.oracle(prompts, expected, 3, engine.model().vocabSize()),
                    scripted(3));
            Collector first = engine.submit(greedy("first", prompts[0], expected[0].length)).await();
            Collector second = engine.submit(greedy("second", prompts[0], expected[0].length)).await();
            assertArrayEquals(expected[0], first.tokens());
            assertArrayEquals(expected[0], second.tokens());
            assertEquals(32, second.events().getFirst().cachedTokens());
        }
    }

    @Test
    void theTargetsHiddenStatesReachTheProposerForEveryPositionItKept() {
        String fixture = "qwen2-tiny"; // a prompt of 33 tokens, prefilled 8 tokens a step
        int[][] prompts = prompts(fixture);
        int[][] expected = continuations(fixture);
        float[] reference = Fixtures.lastHidden(fixture, 0);
        try (TestEngine engine = TestEngine.start(fixture, settings().withMaxNumBatchedTokens(8))) {
            int hidden = engine.model().hiddenSize();
            var proposer = ScriptedProposer.oracle(prompts, expected, 2, engine.model().vocabSize()).withHiddenStates();
            engine.core().setSpeculation(proposer, scripted(3));
            Collector c = engine.submit(greedy("chunked", prompts[0], expected[0].length)).await();
            assertArrayEquals(expected[0], c.tokens());
            assertTrue(proposer.requests().stream().anyMatch(r -> r.maxTokens() == 0 && r.targetHidden() != null),
                    "prefill chunks are reported without asking for drafts");
            Map<Integer, float[]> rows = proposer.hiddenStates(hidden).values().iterator().next();
            // Every position from the first on, without a gap, through the verification steps (the step that
            // finishes the request reports nothing: no draft follows it).
            int last = rows.keySet().stream().mapToInt(Integer::intValue).max().orElseThrow();
            assertTrue(last > prompts[0].length + 4, "positions reported: " + last);
            for (int position = 0; position <= last; position++) {
                assertTrue(rows.containsKey(position), "hidden state of position " + position);
            }
            double worst = 0;
            for (int position = 0; position < prompts[0].length; position++) {
                float[] row = rows.get(position);
                for (int d = 0; d < hidden; d++) {
                    worst = Math.max(worst, Math.abs(row[d] - reference[position * hidden + d]));
                }
            }
            assertTrue(worst < 1e-3, "hidden states within 1e-3 of the float64 reference, worst " + worst);
        }
    }

    @Test
    void rejectedDraftTokensGiveBackTheirKvBlocks() {
        String fixture = "qwen2-tiny";
        int[][] prompts = prompts(fixture);
        int[][] expected = continuations(fixture);
        int blockSize = 4;
        try (TestEngine engine = TestEngine.start(fixture, settings().withBlockSize(blockSize))) {
            // Every draft token wrong: each step verifies 8 tokens and keeps one.
            engine.core().setSpeculation(ScriptedProposer.oracle(prompts, expected, 1, engine.model().vocabSize()),
                    scripted(8));
            List<String> mismatches = new ArrayList<>();
            int promptLength = prompts[0].length;
            Collector c = new Collector() {
                private int produced;

                @Override
                public synchronized void onTokens(TokenEvent event) {
                    produced += event.tokens().length;
                    int computed = promptLength + produced - 1; // the newest token is not computed yet
                    int used = engine.core().stats().kvBlocksUsed();
                    int needed = (computed + blockSize - 1) / blockSize;
                    if (event.finish() == null && used != needed) {
                        mismatches.add(used + " blocks held for " + computed + " computed tokens");
                    }
                    super.onTokens(event);
                }
            };
            engine.submit(greedy("r", prompts[0], expected[0].length), c);
            assertArrayEquals(expected[0], c.await().tokens());
            assertEquals(List.of(), mismatches);
            assertTrue(engine.core().stats().draftTokensProposed() > 20);
            assertEquals(0, engine.core().stats().draftTokensAccepted());
        }
    }

    @Test
    void batchesLargerThanTheLimitDoNotDraft() {
        String fixture = "qwen2-tiny";
        int[][] prompts = prompts(fixture);
        int[][] expected = continuations(fixture);
        try (TestEngine engine = TestEngine.start(fixture, settings())) {
            var proposer = ScriptedProposer.oracle(prompts, expected, 0, engine.model().vocabSize());
            engine.core().setSpeculation(proposer, new SpeculationSettings("scripted", 2, 2));
            int n = 8;
            Collector[] c = new Collector[n];
            // Different lengths: the batch shrinks below the limit as requests finish.
            for (int i = 0; i < n; i++) c[i] = engine.submit(greedy("r" + i, prompts[0], 2 + 2 * i));
            for (int i = 0; i < n; i++) {
                assertArrayEquals(Arrays.copyOf(expected[0], 2 + 2 * i), c[i].await().tokens());
            }
            assertTrue(proposer.batchSizes().stream().allMatch(size -> size <= 2), proposer.batchSizes().toString());
            assertTrue(engine.core().stats().draftTokensAccepted() > 0, "the last requests drafted");
        }
    }

    @Test
    void aProposerThatFailsCostsOnlyItsDrafts() {
        String fixture = "qwen2-tiny";
        int[][] prompts = prompts(fixture);
        int[][] expected = continuations(fixture);
        try (TestEngine engine = TestEngine.start(fixture, settings())) {
            var proposer = ScriptedProposer.oracle(prompts, expected, 0, engine.model().vocabSize()).failingEvery(2);
            engine.core().setSpeculation(proposer, scripted(3));
            Collector[] c = {engine.submit(greedy("a", prompts[0], expected[0].length)),
                    engine.submit(greedy("b", prompts[1], expected[1].length))};
            for (int p = 0; p < 2; p++) {
                assertNull(c[p].await().error());
                assertArrayEquals(expected[p], c[p].tokens());
            }
            assertTrue(engine.core().stats().draftTokensAccepted() > 0);
        }
    }

    @Test
    void logprobsOfVerifiedTokensAreThoseOfPlainDecoding() {
        String fixture = "qwen2-tiny";
        int[][] prompts = prompts(fixture);
        int[][] expected = continuations(fixture);
        var params = new SamplingParams(0, 1, 0, 0, 0, 0, 1, null, 3);
        var request = new GenerationRequest("lp", prompts[0], params, expected[0].length, 0, null, true, -1, null);
        List<TokenLogprobs> plain;
        try (TestEngine engine = TestEngine.start(fixture, settings())) {
            plain = logprobs(engine.submit(request).await());
        }
        try (TestEngine engine = TestEngine.start(fixture, settings())) {
            engine.core().setSpeculation(ScriptedProposer.oracle(prompts, expected, 3, engine.model().vocabSize()),
                    scripted(3));
            Collector c = engine.submit(request).await();
            assertArrayEquals(expected[0], c.tokens());
            assertTrue(c.events().size() < expected[0].length, "drafts were accepted");
            List<TokenLogprobs> speculative = logprobs(c);
            assertEquals(plain.size(), speculative.size());
            for (int t = 0; t < plain.size(); t++) {
                assertEquals(plain.get(t).token(), speculative.get(t).token());
                assertEquals(plain.get(t).logprob(), speculative.get(t).logprob(), 1e-4, "token " + t);
                assertArrayEquals(plain.get(t).topTokens(), speculative.get(t).topTokens());
            }
        }
    }

    private static List<TokenLogprobs> logprobs(Collector c) {
        List<TokenLogprobs> all = new ArrayList<>();
        for (TokenEvent e : c.events()) {
            assertEquals(e.tokens().length, e.logprobs().size());
            all.addAll(e.logprobs());
        }
        return all;
    }

    @Test
    void anEndOfSequenceTokenInsideAnAcceptedDraftEndsTheRequestWithoutBeingOutput() {
        String fixture = "llama3-tiny"; // its first continuation reaches its eos_token_id 2
        int[][] prompts = prompts(fixture);
        int[][] expected = continuations(fixture);
        int eos = ConcurrentGreedyTest.indexOf(expected[0], 2);
        assertTrue(eos > 1);
        try (TestEngine engine = TestEngine.start(fixture, settings())) {
            engine.core().setSpeculation(ScriptedProposer.oracle(prompts, expected, 0, engine.model().vocabSize()),
                    scripted(8));
            Collector c = engine.submit(GenerationRequest.greedy("eos", prompts[0], expected[0].length)).await();
            assertArrayEquals(Arrays.copyOf(expected[0], eos), c.tokens());
            assertEquals(FinishReason.STOP, c.finish());
            // EOS is continuation token 13: the prefill's token, 8 drafts + 1 in the next step, then the step whose
            // accepted draft reaches it.
            assertEquals(13, eos);
            assertEquals(3, c.events().size());
        }
    }

    @Test
    void draftsNeverReachPastMaxTokensOrTheContextLimit() {
        String fixture = "qwen2-tiny";
        int[][] prompts = prompts(fixture);
        int[][] expected = continuations(fixture);
        int maxModelLen = prompts[0].length + 7;
        try (TestEngine engine = TestEngine.start(fixture, settings().withMaxModelLen(maxModelLen))) {
            var proposer = ScriptedProposer.oracle(prompts, expected, 0, engine.model().vocabSize());
            engine.core().setSpeculation(proposer, scripted(8));
            Collector byTokens = engine.submit(greedy("tokens", prompts[0], 5)).await();
            assertArrayEquals(Arrays.copyOf(expected[0], 5), byTokens.tokens());
            assertEquals(FinishReason.LENGTH, byTokens.finish());
            Collector byContext = engine.submit(greedy("context", prompts[0], 100)).await();
            assertArrayEquals(Arrays.copyOf(expected[0], 7), byContext.tokens());
            assertEquals(FinishReason.LENGTH, byContext.finish());
            for (DraftRequest r : proposer.requests()) {
                int generated = r.tokens().length - prompts[0].length;
                int limit = r.sequenceId().startsWith("tokens") ? 5 : 7;
                assertTrue(generated + r.maxTokens() + 1 <= limit, "draft of " + r.maxTokens() + " after " + generated);
            }
        }
    }

    @Test
    void swappingProposersTwentyTimesUnder16StreamsFailsNothingAndChangesNoOutput() throws InterruptedException {
        String fixture = "qwen2-tiny";
        int[][] prompts = prompts(fixture);
        int[][] expected = continuations(fixture);
        try (TestEngine engine = TestEngine.start(fixture, settings())) {
            int vocab = engine.model().vocabSize();
            ScriptedProposer[] proposers = {
                    ScriptedProposer.oracle(prompts, expected, 0, vocab),
                    ScriptedProposer.oracle(prompts, expected, 2, vocab),
                    ScriptedProposer.oracle(prompts, expected, 3, vocab).withHiddenStates(),
                    ScriptedProposer.oracle(prompts, expected, 0, vocab).failingEvery(3)};
            AtomicReference<Throwable> swapFailure = new AtomicReference<>();
            AtomicInteger events = new AtomicInteger();
            Thread swapper = Thread.ofPlatform().start(() -> {
                try {
                    for (int i = 0; i < 20; i++) {
                        // Each swap waits for a few engine steps' worth of streamed events since the last one.
                        int seen = events.get();
                        while (events.get() < seen + 24) LockSupport.parkNanos(200_000);
                        int which = i % (proposers.length + 1);
                        engine.core().setSpeculation(which == proposers.length ? null : proposers[which],
                                new SpeculationSettings(which == proposers.length ? null : "scripted-" + which, 1 + i % 4, 64));
                    }
                } catch (Throwable t) {
                    swapFailure.set(t);
                }
            });
            int waves = 0;
            while (swapper.isAlive() || waves < 2) {
                Collector[] c = new Collector[16];
                for (int i = 0; i < 16; i++) {
                    c[i] = new Collector() {
                        @Override
                        public synchronized void onTokens(TokenEvent event) {
                            events.incrementAndGet();
                            super.onTokens(event);
                        }
                    };
                    engine.submit(greedy("w" + waves + "r" + i, prompts[i % 2], expected[i % 2].length), c[i]);
                }
                for (int i = 0; i < 16; i++) {
                    assertNull(c[i].await().error(), "wave " + waves + " request " + i);
                    assertArrayEquals(expected[i % 2], c[i].tokens(), "wave " + waves + " request " + i);
                }
                waves++;
            }
            swapper.join();
            assertNull(swapFailure.get());
            engine.core().setSpeculation(null, SpeculationSettings.OFF);
            int opened = 0;
            for (ScriptedProposer p : proposers) {
                assertEquals(List.of(), p.violations());
                assertEquals(p.opened(), p.closed(), "every session was closed");
                opened += p.opened();
            }
            assertTrue(opened >= 16, "sessions opened: " + opened);
            System.out.printf("%d waves of 16 streams across 20 swaps; %s%n", waves, engine.core().speculativeStats());
            assertTrue(engine.core().stats().draftTokensAccepted() > 0);
            assertEquals("off", engine.core().speculationStatus());
        }
    }
}
