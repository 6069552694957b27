package dev.kiln.console.history;

import dev.kiln.api.engine.EngineStats;

/**
 * The cumulative counters read at one moment: the engine's statistics and the sum and count of the server's
 * time-to-first-token observations (zero when the server's metrics are not available).
 *
 * @param nanos    when it was read ({@link System#nanoTime()})
 * @param stats    the engine's statistics
 * @param ttftSum  seconds of time to first token observed so far
 * @param ttftCount observations so far
 */
public record Reading(long nanos, EngineStats stats, double ttftSum, long ttftCount) {}
