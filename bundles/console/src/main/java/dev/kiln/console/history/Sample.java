package dev.kiln.console.history;

/**
 * One second of the plots: rates over the interval since the previous reading, levels at its end. A rate with
 * nothing to measure (no request got its first token, no draft was proposed) is NaN and the plot leaves a gap.
 *
 * @param epochMillis            the wall-clock time of the reading
 * @param generationTokensPerSec tokens generated per second
 * @param promptTokensPerSec     prompt tokens computed per second
 * @param ttftSeconds            mean time to first token of the requests that got it in the interval
 * @param acceptanceRate         speculative tokens accepted / proposed in the interval
 * @param kvUsage                fraction of KV cache blocks in use
 * @param running                requests in the running batch
 * @param waiting                requests waiting
 */
public record Sample(long epochMillis, double generationTokensPerSec, double promptTokensPerSec, double ttftSeconds,
                     double acceptanceRate, double kvUsage, int running, int waiting) {

    /**
     * The sample between two readings. Counters that went down were reset (the engine reloaded its model): the
     * interval then counts from zero.
     */
    public static Sample between(Reading previous, Reading current, long epochMillis) {
        double seconds = Math.max(1e-3, (current.nanos() - previous.nanos()) / 1e9);
        var p = previous.stats();
        var c = current.stats();
        long generated = delta(p.generationTokens(), c.generationTokens());
        long prompt = delta(p.promptTokens(), c.promptTokens());
        long proposed = delta(p.draftTokensProposed(), c.draftTokensProposed());
        long accepted = delta(p.draftTokensAccepted(), c.draftTokensAccepted());
        long firstTokens = delta(previous.ttftCount(), current.ttftCount());
        double ttftSum = current.ttftCount() >= previous.ttftCount() ? current.ttftSum() - previous.ttftSum() : current.ttftSum();
        return new Sample(epochMillis, generated / seconds, prompt / seconds,
                firstTokens == 0 ? Double.NaN : ttftSum / firstTokens,
                proposed == 0 ? Double.NaN : (double) accepted / proposed,
                c.kvBlocksTotal() == 0 ? 0 : (double) c.kvBlocksUsed() / c.kvBlocksTotal(),
                c.running(), c.waiting());
    }

    private static long delta(long before, long after) {
        return after >= before ? after - before : after;
    }
}
