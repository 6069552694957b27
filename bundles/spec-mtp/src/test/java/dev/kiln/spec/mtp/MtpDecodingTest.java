package dev.kiln.spec.mtp;

import static dev.kiln.spec.mtp.Harness.greedy;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.engine.EngineSettings;
import dev.kiln.engine.InferenceEngineCore;
import dev.kiln.engine.SpeculationSettings;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * MTP drafting through the engine on the DeepSeek-V3 fixtures (bf16 and FP8 blocks): greedy outputs are the
 * reference continuations, with prompts prefilled in chunks, requests batched together, and a repeated prompt
 * taken from the prefix cache.
 */
class MtpDecodingTest {
    @ParameterizedTest
    @ValueSource(strings = {"deepseek-v3-tiny", "deepseek-v3-tiny-fp8"})
    void greedyOutputsWithMtpDraftsAreTheReferenceContinuations(String fixture) {
        int[][] prompts = {Harness.prompt(fixture, 0), Harness.prompt(fixture, 1)};
        int[][] expected = {Harness.greedyContinuation(fixture, 0), Harness.greedyContinuation(fixture, 1)};
        for (int k : new int[] {1, 3}) {
            // Chunks of 8 tokens: the 27-token prompt is reported to the module in four steps.
            var settings = EngineSettings.defaults().withKvCacheMemory(8L << 20).withMaxNumBatchedTokens(8);
            try (CausalLanguageModel model = Harness.build(Harness.fixture(fixture), 8);
                 var engine = new InferenceEngineCore(model, settings, null, List.of())) {
                engine.setSpeculation(new MtpProposer(1 << 20, 16), new SpeculationSettings("mtp", k, 16));
                assertEquals("mtp, " + k + " tokens, batches up to 16", engine.speculationStatus());
                Harness.Collector[] c = new Harness.Collector[6];
                for (int i = 0; i < c.length; i++) {
                    c[i] = new Harness.Collector();
                    engine.submit(greedy("r" + i, prompts[i % 2], expected[i % 2].length), c[i]);
                }
                for (int i = 0; i < c.length; i++) {
                    assertArrayEquals(expected[i % 2], c[i].await().tokens(), fixture + " k=" + k + " request " + i);
                }
                // Again, from the prefix cache: the module copies the finished sequences' entries.
                var again = new Harness.Collector();
                engine.submit(greedy("again", prompts[0], expected[0].length), again);
                assertArrayEquals(expected[0], again.await().tokens());
                assertTrue(again.events().getFirst().cachedTokens() > 0);
                assertTrue(engine.stats().draftTokensProposed() > 0, engine.stats().toString());
            }
        }
    }
}
