package dev.kiln.spec.reference;

import java.util.Arrays;

/**
 * Prompt lookup decoding (Saxena 2023; vLLM's {@code ngram} proposer) with a reference text (Yang et al. 2023,
 * "Inference with Reference"): the last {@code n} tokens of a sequence are looked up in the reference and earlier in
 * the sequence, and the tokens that followed the match become the draft. Longer matches are preferred (they predict
 * better); among equally long ones a match in the reference text (which the caller supplied because the answer
 * will follow it; its earliest, as an answer repeating or editing a text goes through it from the start), then the
 * most recent match in the sequence (which continues the text being copied or the loop being repeated).
 *
 * <p>A text that repeats itself matches in many places. When the previous draft came from the reference, the
 * caller passes where it started, and a match that continues from there (the output following the reference
 * along) wins over any other of the same length.
 *
 * <p>One backward scan per source, comparing only where the last token matches: linear in the length of the
 * sequence and the reference. Immutable and thread-safe.
 */
public final class NgramMatcher {
    private final int minNgram;
    private final int maxNgram;

    /**
     * @param minNgram the shortest suffix worth matching (1 drafts after any repeated token)
     * @param maxNgram the longest suffix compared
     */
    public NgramMatcher(int minNgram, int maxNgram) {
        if (minNgram < 1 || maxNgram < minNgram) {
            throw new IllegalArgumentException("n-gram sizes must satisfy 1 <= min <= max, got " + minNgram + ", " + maxNgram);
        }
        this.minNgram = minNgram;
        this.maxNgram = maxNgram;
    }

    /** The shortest suffix matched. */
    public int minNgram() {
        return minNgram;
    }

    /** The longest suffix compared. */
    public int maxNgram() {
        return maxNgram;
    }

    /**
     * A draft and where in the reference it starts.
     *
     * @param tokens         the draft tokens, possibly none
     * @param referenceStart the index in the reference of the first draft token, or -1 when the draft comes from
     *                       the sequence itself (or there is none)
     */
    public record Proposal(int[] tokens, int referenceStart) {
        static final Proposal NONE = new Proposal(new int[0], -1);
    }

    /**
     * Up to {@code maxTokens} tokens predicted to follow {@code tokens}, from the best match of its suffix in
     * {@code reference} or earlier in {@code tokens}; none when no suffix of at least {@code minNgram} tokens
     * recurs.
     */
    public int[] propose(int[] tokens, int[] reference, int maxTokens) {
        return propose(tokens, reference, maxTokens, -1, 0).tokens();
    }

    /**
     * As {@link #propose(int[], int[], int)}, preferring a reference match that ends within {@code window}
     * tokens after {@code previousStart - 1}: where the sequence stands if it went on following the reference from
     * the previous draft's start ({@code previousStart} -1: no previous draft from the reference).
     */
    public Proposal propose(int[] tokens, int[] reference, int maxTokens, int previousStart, int window) {
        int length = tokens.length;
        if (maxTokens <= 0 || length < minNgram) return Proposal.NONE;
        // A match in the reference may end at its last token only if something follows: matches end before it.
        // Answers that repeat or edit a reference go through it from its start: the earliest match first.
        Match inReference = longest(reference, reference.length - 1, tokens, 0, true);
        if (previousStart >= 0 && inReference.length > 0) {
            int lowest = Math.max(0, previousStart - 1);
            int limit = Math.min(reference.length - 1, previousStart + window + 1);
            Match aligned = longest(reference, limit, tokens, lowest, true);
            if (aligned.length >= Math.min(inReference.length, maxNgram)) inReference = aligned;
        }
        // In the sequence the match must end before the suffix itself does.
        Match inSequence = longest(tokens, length - 1, tokens, 0, false);
        Match best = inReference.length >= inSequence.length ? inReference : inSequence;
        if (best.length < minNgram) return Proposal.NONE;
        boolean fromReference = best == inReference;
        int[] source = fromReference ? reference : tokens;
        int from = best.end + 1;
        int n = Math.min(maxTokens, source.length - from);
        if (n <= 0) return Proposal.NONE;
        return new Proposal(Arrays.copyOfRange(source, from, from + n), fromReference ? from : -1);
    }

    private record Match(int end, int length) {}

    /**
     * The longest match (at most {@code maxNgram}) of the suffix of {@code tokens} that ends in {@code source} at a
     * position in {@code [lowest, limit)}; on ties the latest such position, or the earliest when {@code earliest}.
     */
    private Match longest(int[] source, int limit, int[] tokens, int lowest, boolean earliest) {
        int last = tokens[tokens.length - 1];
        int bestEnd = -1;
        int bestLength = 0;
        int step = earliest ? 1 : -1;
        for (int end = earliest ? lowest : limit - 1; end >= lowest && end < limit; end += step) {
            if (source[end] != last) continue;
            int k = 1;
            int most = Math.min(Math.min(maxNgram, end + 1), tokens.length);
            while (k < most && source[end - k] == tokens[tokens.length - 1 - k]) k++;
            if (k > bestLength) {
                bestLength = k;
                bestEnd = end;
                if (k == maxNgram) break; // nothing can be longer, and this one comes first in scan order
            }
        }
        return new Match(bestEnd, bestLength);
    }
}
