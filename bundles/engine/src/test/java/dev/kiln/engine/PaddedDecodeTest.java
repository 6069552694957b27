package dev.kiln.engine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.api.model.ForwardResult;
import dev.kiln.engine.testing.Collector;
import dev.kiln.engine.testing.DelegatingModel;
import dev.kiln.engine.testing.Fixtures;
import dev.kiln.sampler.DefaultSampler;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * A backend that asks for padded decode steps ({@link ComputeBackend#decodeBatchSize}) gets them, and the padding
 * changes nothing a request sees: the padded sequences store no key or value (slot -1), want no logits, and every
 * request still produces its reference continuation, in a dense model and in one with routed experts. The backend
 * is the CPU one behind a proxy that pads every decode step of n sequences to n + 5.
 */
class PaddedDecodeTest {
    private static final int PADDING = 5;

    private final AtomicInteger paddedSteps = new AtomicInteger();
    private final AtomicInteger paddingSequences = new AtomicInteger();

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "deepseek-v2-lite-tiny"})
    void paddedDecodeStepsLeaveEveryContinuationAsTheReference(String fixture) throws Exception {
        int[][] prompts = {Fixtures.prompt(fixture, 0), Fixtures.prompt(fixture, 1)};
        int[][] expected = {Fixtures.greedyContinuation(fixture, 0), Fixtures.greedyContinuation(fixture, 1)};
        CausalLanguageModel real = Fixtures.build(fixture, 256);
        try (CausalLanguageModel model = padding(real);
             InferenceEngineCore core = new InferenceEngineCore(model, EngineSettings.defaults().withKvCacheMemory(16L << 20),
                     new DefaultSampler(), List.of())) {
            Collector[] collectors = new Collector[6];
            for (int i = 0; i < collectors.length; i++) {
                collectors[i] = new Collector();
                core.submit(ConcurrentGreedyTest.greedy("r" + i, prompts[i % 2], expected[i % 2].length), collectors[i]);
            }
            for (int i = 0; i < collectors.length; i++) {
                Collector c = collectors[i].await();
                assertNull(c.error(), () -> "request " + c + " failed");
                assertArrayEquals(expected[i % 2], c.tokens(), "request " + i);
            }
            assertTrue(paddedSteps.get() > 0, "no decode step was padded");
            assertEquals((long) PADDING * paddedSteps.get(), paddingSequences.get(), "padding per padded step");
            assertEquals(0, core.stats().kvBlocksUsed());
        }
    }

    /** The model with a backend that pads decode steps by {@link #PADDING}, checking what each padded step holds. */
    private CausalLanguageModel padding(CausalLanguageModel real) {
        return new DelegatingModel(real, (method, args) -> method.getName().equals("decodeBatchSize")
                ? (Object) ((Integer) args[0] + PADDING) : DelegatingModel.DELEGATE) {
            @Override
            public ForwardResult forward(ForwardBatch batch, KvCache cache) {
                AttentionMetadata a = batch.attention();
                int unstored = 0;
                for (int slot : a.slotMapping()) if (slot < 0) unstored++;
                if (unstored > 0) {
                    // Padding: the trailing sequences, one token each at position 0, none of whose rows has logits.
                    int n = a.numSequences();
                    for (int s = n - unstored; s < n; s++) {
                        assertEquals(1, a.queryLength(s));
                        assertEquals(1, a.contextLength()[s]);
                        int row = a.queryStart()[s];
                        assertEquals(-1, a.slotMapping()[row]);
                        assertEquals(0, batch.positions()[row]);
                        for (int r : batch.logitRows()) assertTrue(r < a.queryStart()[n - unstored], "a padded row has logits");
                    }
                    for (int s = 0; s < n - unstored; s++) assertEquals(1, a.queryLength(s), "padding a step that is not plain decode");
                    paddedSteps.incrementAndGet();
                    paddingSequences.addAndGet(unstored);
                }
                return super.forward(batch, cache);
            }
        };
    }
}
