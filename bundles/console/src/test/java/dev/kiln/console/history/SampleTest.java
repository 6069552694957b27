package dev.kiln.console.history;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.engine.EngineStats;
import java.util.List;
import org.junit.jupiter.api.Test;

class SampleTest {
    private static EngineStats stats(int running, int kvUsed, long prompt, long generated, long proposed, long accepted) {
        return new EngineStats(running, 0, kvUsed, 100, 0, 0, prompt, generated, proposed, accepted, 0);
    }

    @Test
    void ratesAreDeltasOverTheIntervalAndLevelsAreTheLatest() {
        Reading a = new Reading(0, stats(1, 10, 100, 50, 40, 10), 1.0, 4);
        Reading b = new Reading(2_000_000_000L, stats(3, 25, 300, 150, 80, 40), 1.6, 7);
        Sample s = Sample.between(a, b, 42);
        assertEquals(42, s.epochMillis());
        assertEquals(50, s.generationTokensPerSec(), 1e-9);  // 100 tokens in 2 s
        assertEquals(100, s.promptTokensPerSec(), 1e-9);
        assertEquals(0.2, s.ttftSeconds(), 1e-9);             // 0.6 s over 3 first tokens
        assertEquals(0.75, s.acceptanceRate(), 1e-9);         // 30 of 40 drafts accepted
        assertEquals(0.25, s.kvUsage(), 1e-9);
        assertEquals(3, s.running());
    }

    @Test
    void nothingToMeasureIsNaNNotZero() {
        Reading a = new Reading(0, stats(0, 0, 0, 0, 0, 0), 0, 0);
        Reading b = new Reading(1_000_000_000L, stats(0, 0, 0, 0, 0, 0), 0, 0);
        Sample s = Sample.between(a, b, 0);
        assertTrue(Double.isNaN(s.ttftSeconds()));
        assertTrue(Double.isNaN(s.acceptanceRate()));
        assertEquals(0, s.generationTokensPerSec());
    }

    @Test
    void aCounterThatWentDownWasResetByAReload() {
        Reading before = new Reading(0, stats(0, 0, 1000, 900, 0, 0), 5, 10);
        Reading after = new Reading(1_000_000_000L, stats(0, 0, 20, 7, 0, 0), 0.5, 1);
        Sample s = Sample.between(before, after, 0);
        assertEquals(7, s.generationTokensPerSec(), 1e-9);
        assertEquals(0.5, s.ttftSeconds(), 1e-9);
    }

    @Test
    void historyKeepsTheNewestSamplesInOrder() {
        History h = new History(3);
        for (int t = 1; t <= 5; t++) h.add(new Sample(t, t, 0, Double.NaN, Double.NaN, 0, 0, 0));
        assertEquals(List.of(3L, 4L, 5L), h.after(0).stream().map(Sample::epochMillis).toList());
        assertEquals(List.of(5L), h.after(4).stream().map(Sample::epochMillis).toList());
    }
}
