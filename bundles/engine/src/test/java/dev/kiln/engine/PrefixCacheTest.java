package dev.kiln.engine;

import static dev.kiln.engine.ConcurrentGreedyTest.KV_MEMORY;
import static dev.kiln.engine.ConcurrentGreedyTest.greedy;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.kiln.api.engine.EngineStats;
import dev.kiln.engine.testing.Collector;
import dev.kiln.engine.testing.Fixtures;
import dev.kiln.engine.testing.TestEngine;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

/** Prefix caching: reused blocks give identical results and save exactly their tokens of prompt computation. */
class PrefixCacheTest {
    private static final String FIXTURE = "qwen2-tiny";
    private static final int BLOCK = EngineSettings.DEFAULT_BLOCK_SIZE;

    @Test
    void theSamePromptTwiceReusesItsFullBlocks() {
        int[] prompt = Fixtures.prompt(FIXTURE, 0); // 33 tokens: two full blocks and one token
        int[] expected = Fixtures.greedyContinuation(FIXTURE, 0);
        try (TestEngine engine = TestEngine.start(FIXTURE, EngineSettings.defaults().withKvCacheMemory(KV_MEMORY))) {
            Collector first = engine.submit(greedy("first", prompt, expected.length)).await();
            engine.awaitIdle();
            EngineStats before = engine.core().stats();
            assertEquals(prompt.length, before.promptTokens());
            assertEquals(0, before.prefixCacheHits());
            assertEquals(0, first.events().getFirst().cachedTokens());

            Collector second = engine.submit(greedy("second", prompt, expected.length)).await();
            engine.awaitIdle();
            EngineStats after = engine.core().stats();
            assertArrayEquals(expected, first.tokens());
            assertArrayEquals(expected, second.tokens());
            int cached = (prompt.length - 1) / BLOCK * BLOCK;
            assertEquals(32, cached);
            assertEquals(cached, second.events().getFirst().cachedTokens());
            assertEquals(cached, after.prefixCacheHits());
            assertEquals(2L * prompt.length, after.prefixCacheQueries());
            assertEquals(prompt.length - cached, after.promptTokens() - before.promptTokens(),
                    "only the uncached tail of the prompt is computed");
            assertEquals(0, after.kvBlocksUsed(), "cached blocks of finished requests count as free");
        }
    }

    @Test
    void aSharedPrefixOfOneBlockIsReusedAndTheResultIsUnchanged() {
        int[] base = Fixtures.prompt(FIXTURE, 0);
        int[] variant = Arrays.copyOf(base, 24); // shares the first block (16 tokens) and 4 more, then differs
        for (int i = 20; i < variant.length; i++) variant[i] = (base[i] + 7 + i) % 384;
        int maxTokens = 10;

        int[] alone;
        try (TestEngine fresh = TestEngine.start(FIXTURE, EngineSettings.defaults().withKvCacheMemory(KV_MEMORY))) {
            alone = fresh.submit(greedy("alone", variant, maxTokens)).await().tokens();
        }
        try (TestEngine engine = TestEngine.start(FIXTURE, EngineSettings.defaults().withKvCacheMemory(KV_MEMORY))) {
            engine.submit(greedy("base", base, 4)).await();
            engine.awaitIdle();
            long computedBefore = engine.core().stats().promptTokens();
            Collector shared = engine.submit(greedy("shared", variant, maxTokens)).await();
            engine.awaitIdle();
            assertArrayEquals(alone, shared.tokens(), "a cached prefix changes nothing in the output");
            assertEquals(BLOCK, shared.events().getFirst().cachedTokens());
            assertEquals(variant.length - BLOCK, engine.core().stats().promptTokens() - computedBefore);
        }
    }

    @Test
    void generatedTokensFillCachedBlocksTooSoAFollowUpTurnReusesThem() {
        int[] prompt = Fixtures.prompt(FIXTURE, 1); // 7 tokens
        int[] expected = Fixtures.greedyContinuation(FIXTURE, 1); // 16 tokens
        try (TestEngine engine = TestEngine.start(FIXTURE, EngineSettings.defaults().withKvCacheMemory(KV_MEMORY))) {
            engine.submit(greedy("turn1", prompt, expected.length)).await();
            engine.awaitIdle();
            // The next turn repeats prompt and answer: 23 tokens whose first block was filled during decoding.
            int[] followUp = new int[prompt.length + expected.length];
            System.arraycopy(prompt, 0, followUp, 0, prompt.length);
            System.arraycopy(expected, 0, followUp, prompt.length, expected.length);
            Collector turn2 = engine.submit(greedy("turn2", followUp, 1)).await();
            assertEquals(BLOCK, turn2.events().getFirst().cachedTokens());
        }
    }
}
