package dev.kiln.engine.scheduler;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.api.engine.TokenListener;
import dev.kiln.engine.kv.BlockManager;
import java.util.List;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/** The scheduling policy, step by step, without a model: the engine's part is played by {@link #run}. */
class SchedulerTest {
    private static final int BLOCK = 4;
    private static final TokenListener IGNORE = new TokenListener() {
        @Override
        public void onTokens(TokenEvent event) {}

        @Override
        public void onError(Throwable error) {}
    };
    private long arrivals;

    private Sequence sequence(int promptLength, int salt) {
        int[] prompt = IntStream.range(0, promptLength).map(i -> salt * 1000 + i).toArray();
        return new Sequence(GenerationRequest.greedy("s" + salt, prompt, 100), IGNORE, arrivals++);
    }

    /** What the engine does after a forward: advance, register full blocks, and append a token when caught up. */
    private static void run(List<Scheduler.Entry> plan, BlockManager blocks) {
        for (Scheduler.Entry e : plan) {
            Sequence s = e.sequence();
            s.advance(e.tokens());
            blocks.registerFullBlocks(s.blocks(), s.tokens(), s.computed());
            if (s.uncomputed() == 0) s.append(7);
        }
    }

    private static int tokensOf(List<Scheduler.Entry> plan, Sequence s) {
        return plan.stream().filter(e -> e.sequence() == s).mapToInt(Scheduler.Entry::tokens).sum();
    }

    @Test
    void longPromptsArePrefilledInChunksOfTheBudget() {
        var blocks = new BlockManager(64, BLOCK);
        var scheduler = new Scheduler(blocks, 8, 8);
        Sequence s = sequence(20, 1);
        scheduler.enqueue(s);
        int[] chunks = new int[4];
        for (int step = 0; step < 4; step++) {
            var plan = scheduler.schedule();
            chunks[step] = tokensOf(plan, s);
            run(plan, blocks);
        }
        assertEquals(List.of(8, 8, 4, 1), List.of(chunks[0], chunks[1], chunks[2], chunks[3]));
    }

    @Test
    void decodesAreScheduledBeforePromptChunks() {
        var blocks = new BlockManager(64, BLOCK);
        var scheduler = new Scheduler(blocks, 8, 8);
        Sequence older = sequence(30, 1); // admitted first, still prefilling
        Sequence decoding = sequence(3, 2);
        scheduler.enqueue(decoding);
        run(scheduler.schedule(), blocks); // decoding's prompt done: it now decodes
        scheduler.enqueue(older);
        var plan = scheduler.schedule();
        assertEquals(1, tokensOf(plan, decoding));
        assertEquals(7, tokensOf(plan, older));
        run(plan, blocks);
        // Running prefills come before newly admitted ones, and decodes before both.
        Sequence newcomer = sequence(5, 3);
        scheduler.enqueue(newcomer);
        plan = scheduler.schedule();
        assertSame(decoding, plan.get(0).sequence());
        assertSame(older, plan.get(1).sequence());
        assertEquals(7, plan.get(1).tokens());
        assertEquals(0, tokensOf(plan, newcomer));
    }

    @Test
    void theQueueIsServedInOrderWithoutOvertaking() {
        var blocks = new BlockManager(4, BLOCK); // 16 token slots
        var scheduler = new Scheduler(blocks, 8, 64);
        Sequence first = sequence(10, 1); // 3 blocks
        Sequence big = sequence(8, 2); // 2 blocks: does not fit next to first
        Sequence small = sequence(2, 3); // 1 block: would fit, but must not overtake
        scheduler.enqueue(first);
        scheduler.enqueue(big);
        scheduler.enqueue(small);
        var plan = scheduler.schedule();
        assertEquals(1, plan.size());
        assertSame(first, plan.getFirst().sequence());
        assertEquals(2, scheduler.waitingCount());
    }

    @Test
    void maxNumSeqsBoundsTheRunningBatch() {
        var blocks = new BlockManager(64, BLOCK);
        var scheduler = new Scheduler(blocks, 2, 64);
        for (int i = 0; i < 5; i++) scheduler.enqueue(sequence(3, i));
        assertEquals(2, scheduler.schedule().size());
        assertEquals(2, scheduler.runningCount());
        assertEquals(3, scheduler.waitingCount());
    }

    @Test
    void theYoungestSequenceIsPreemptedAndRequeuedFirstWhenBlocksRunOut() {
        var blocks = new BlockManager(3, BLOCK);
        var scheduler = new Scheduler(blocks, 8, 64);
        Sequence old = sequence(4, 1);
        Sequence young = sequence(3, 2);
        Sequence later = sequence(1, 3);
        scheduler.enqueue(old);
        scheduler.enqueue(young);
        run(scheduler.schedule(), blocks); // old: 1 block, full; young: 1 block with room for one more
        scheduler.enqueue(later);
        run(scheduler.schedule(), blocks); // old decodes into a second block, young fills its first; no room for later
        assertEquals(3, blocks.usedBlocks());
        assertEquals(Sequence.State.WAITING, later.state());

        // Both now need a new block and none is free: the youngest running sequence gives its blocks up.
        var plan = scheduler.schedule();
        assertTrue(scheduler.preemptions() > 0);
        assertEquals(Sequence.State.WAITING, young.state());
        assertEquals(0, young.computed());
        assertEquals(0, young.blocks().size());
        assertEquals(1, tokensOf(plan, old));
        assertEquals(0, tokensOf(plan, later), "nothing is admitted in a step that preempted");
        assertSame(young, scheduler.all().get(1), "requeued at the front");

        // Once old finishes, young is recomputed: prompt and generated tokens, 5 in all, of which its first block
        // survived in the prefix cache.
        scheduler.remove(old);
        old.finish();
        plan = scheduler.schedule();
        assertEquals(5, young.length());
        assertEquals(BLOCK, young.computed());
        assertEquals(1, tokensOf(plan, young));
        assertEquals(Sequence.State.RUNNING, later.state());
    }
}
