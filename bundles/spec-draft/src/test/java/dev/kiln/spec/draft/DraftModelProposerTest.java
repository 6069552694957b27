package dev.kiln.spec.draft;

import static dev.kiln.spec.draft.Harness.greedy;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.engine.EngineStats;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.speculative.Draft;
import dev.kiln.api.speculative.DraftRequest;
import dev.kiln.api.speculative.ProposerStats;
import dev.kiln.engine.EngineSettings;
import dev.kiln.engine.InferenceEngineCore;
import dev.kiln.engine.SpeculationSettings;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The draft model drafts through its own paged cache: drafting with the target itself is accepted throughout,
 * any other draft (another vocabulary size included) leaves greedy outputs unchanged, with long prompts caught up
 * in chunks, many sequences at once and a cache too small for all of them.
 */
class DraftModelProposerTest {
    private static final long KV = 16L << 20;

    /** An engine over {@code target} drafting with {@code draft} (both fixtures), k tokens. */
    private record Setup(CausalLanguageModel model, InferenceEngineCore engine) implements AutoCloseable {
        @Override
        public void close() {
            engine.close();
            model.close();
        }
    }

    private static Setup start(String target, EngineSettings settings, DraftModelProposer proposer, int k) {
        CausalLanguageModel model = Harness.build(Harness.fixture(target), settings.maxNumBatchedTokens());
        var engine = new InferenceEngineCore(model, settings, null, List.of());
        engine.setSpeculation(proposer, new SpeculationSettings("draft-model", k, 64));
        return new Setup(model, engine);
    }

    private static DraftModelProposer draftOf(String fixture, int maxBatchTokens, long kvMemory) {
        return DraftModelProposer.of(backend -> Harness.build(Harness.fixture(fixture), maxBatchTokens), kvMemory, 16);
    }

    private static void awaitDrafting(InferenceEngineCore engine, int[] prompt) {
        // The draft model loads in the background; a throwaway request waits until drafts flow.
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (engine.stats().draftTokensProposed() == 0) {
            if (System.nanoTime() > deadline) throw new AssertionError("the draft model never drafted");
            var c = new Harness.Collector();
            engine.submit(greedy("warm-up", prompt, 4), c);
            c.await();
        }
    }

    @Test
    void theTargetAsItsOwnDraftIsAcceptedThroughout() {
        String fixture = "qwen2-tiny";
        int[][] prompts = {Harness.prompt(fixture, 0), Harness.prompt(fixture, 1)};
        int[][] expected = {Harness.greedyContinuation(fixture, 0), Harness.greedyContinuation(fixture, 1)};
        try (Setup s = start(fixture, EngineSettings.defaults().withKvCacheMemory(KV), draftOf(fixture, 64, KV), 4)) {
            awaitDrafting(s.engine(), prompts[0]);
            EngineStats before = s.engine().stats();
            Harness.Collector[] c = new Harness.Collector[2];
            for (int p = 0; p < 2; p++) {
                c[p] = new Harness.Collector();
                s.engine().submit(greedy("r" + p, prompts[p], expected[p].length), c[p]);
            }
            for (int p = 0; p < 2; p++) assertArrayEquals(expected[p], c[p].await().tokens());
            EngineStats after = s.engine().stats();
            long proposed = after.draftTokensProposed() - before.draftTokensProposed();
            long accepted = after.draftTokensAccepted() - before.draftTokensAccepted();
            assertTrue(proposed > 10);
            assertEquals(proposed, accepted, "the same model drafts exactly what the target decides");
            ProposerStats stats = s.engine().speculativeStats().getFirst();
            assertEquals("draft-model", stats.name());
            assertTrue(stats.meanAcceptedLength() > 4, "4 drafts and the target's token per step: " + stats);
        }
    }

    @Test
    void anotherDraftModelNeverChangesTheOutputWhateverItsVocabularySize() {
        // qwen2-tiny (vocabulary 384) drafted by qwen2-long (512: only tokens below 384 are drafted) and by
        // llama3-tiny (320: sequences holding a larger token are not drafted for).
        for (String draft : new String[] {"qwen2-long", "llama3-tiny"}) {
            String fixture = "qwen2-tiny";
            try (Setup s = start(fixture, EngineSettings.defaults().withKvCacheMemory(KV).withMaxNumBatchedTokens(64),
                    draftOf(draft, 32, KV), 3)) {
                if (draft.equals("qwen2-long")) awaitDrafting(s.engine(), Harness.prompt(fixture, 1));
                for (int p = 0; p < 2; p++) {
                    int[] expected = Harness.greedyContinuation(fixture, p);
                    var c = new Harness.Collector();
                    s.engine().submit(greedy("r" + p, Harness.prompt(fixture, p), expected.length), c);
                    assertArrayEquals(expected, c.await().tokens(), fixture + " drafted by " + draft);
                }
            }
        }
    }

    @Test
    void aLongPromptIsCaughtUpInChunksAndManySequencesShareATooSmallCache() {
        String fixture = "qwen2-long"; // prompts of 600 and 97 tokens
        int[][] prompts = {Harness.prompt(fixture, 0), Harness.prompt(fixture, 1)};
        int[][] expected = {Harness.greedyContinuation(fixture, 0), Harness.greedyContinuation(fixture, 1)};
        long blockBytes;
        try (var draft = Harness.build(Harness.fixture(fixture), 16)) {
            blockBytes = draft.kvCacheSpec().bytesPerToken() * 16;
        }
        // 60 blocks of 16 hold the long prompt and little else: eight sequences take turns.
        var proposer = draftOf(fixture, 128, 60 * blockBytes);
        try (Setup s = start(fixture, EngineSettings.defaults().withKvCacheMemory(KV).withMaxNumBatchedTokens(96),
                proposer, 3)) {
            awaitDrafting(s.engine(), prompts[1]);
            Harness.Collector[] c = new Harness.Collector[8];
            for (int i = 0; i < c.length; i++) {
                c[i] = new Harness.Collector();
                s.engine().submit(greedy("r" + i, prompts[i % 2], expected[i % 2].length), c[i]);
            }
            for (int i = 0; i < c.length; i++) assertArrayEquals(expected[i % 2], c[i].await().tokens(), "request " + i);
            assertTrue(s.engine().stats().draftTokensAccepted() > 20, s.engine().stats().toString());
        }
    }

    @Test
    void aSessionDraftsNothingUntilItsModelIsLoadedAndCanCloseWhileLoading() throws Exception {
        try (CausalLanguageModel target = Harness.build(Harness.fixture("qwen2-tiny"), 16)) {
            var release = new CountDownLatch(1);
            var proposer = new DraftModelProposer((folder, backend) -> {
                release.await();
                return new DraftModelProposer.DraftModel(Harness.build(Harness.fixture("qwen2-tiny"), 16), () -> { });
            }, KV, 16);
            var session = (DraftModelSession) proposer.open(target);
            var request = new DraftRequest("s", Harness.prompt("qwen2-tiny", 0), new int[0], null, 0, 3);
            assertEquals(List.of(Draft.NONE), session.propose(List.of(request)));
            assertEquals("loading", session.status());
            release.countDown();
            long deadline = System.nanoTime() + 10_000_000_000L;
            while (!session.isReady() && System.nanoTime() < deadline) Thread.sleep(5);
            assertEquals(3, session.propose(List.of(request)).getFirst().tokens().length);
            session.close();
            assertEquals("closed", session.status());

            var never = new CountDownLatch(1);
            var stuck = new DraftModelProposer((folder, backend) -> {
                never.await();
                throw new AssertionError("unreachable");
            }, KV, 16);
            var closing = (DraftModelSession) stuck.open(target);
            closing.close(); // interrupts the load
            deadline = System.nanoTime() + 10_000_000_000L;
            while (!closing.status().contains("closed") && System.nanoTime() < deadline) Thread.sleep(5);
            assertTrue(closing.status().contains("closed"), closing.status());
            assertFalse(closing.isReady());
        }
    }

    @Test
    void theDraftFolderIsTheConfiguredOneElseTheTargetsWithDraftAppended(@TempDir Path dir) throws Exception {
        Path target = Files.createDirectories(dir.resolve("model"));
        assertThrows(IllegalArgumentException.class, () -> DraftModelProposer.draftFolder(null, target));
        Path sibling = Files.createDirectories(dir.resolve("model-draft"));
        assertEquals(sibling, DraftModelProposer.draftFolder(null, target));
        assertEquals(dir, DraftModelProposer.draftFolder(dir, target));

        Files.writeString(target.resolve("tokenizer.json"), "{\"model\": 1}");
        DraftModelProposer.requireSameTokenizer(target, sibling); // the draft has none: nothing to compare
        Files.writeString(sibling.resolve("tokenizer.json"), "{\"model\": 1}");
        DraftModelProposer.requireSameTokenizer(target, sibling);
        Files.writeString(sibling.resolve("tokenizer.json"), "{\"model\": 2}");
        var e = assertThrows(IllegalArgumentException.class, () -> DraftModelProposer.requireSameTokenizer(target, sibling));
        assertTrue(e.getMessage().contains("another tokenizer"));
    }
}
