package dev.kiln.server.structured;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A JSON schema {@code format} a string's text must have, as an automaton over its bytes: {@code date}
 * ({@code 2026-11-24}), {@code time} ({@code 10:30:00}, a fraction and a zone optional: {@code Z} or {@code +01:00}),
 * {@code date-time} (both, joined by {@code T}) as RFC 3339 writes them, and {@code uuid}. Built by Glushkov's
 * construction: each character position of the pattern is a bit, so the automaton's state is one long.
 */
final class StringFormat {
    private static final String DIGITS = "0123456789";
    private static final String HEX = "0123456789abcdefABCDEF";
    static final Map<String, StringFormat> KNOWN = Map.of(
            "date", build(f -> f.date()),
            "time", build(f -> f.time()),
            "date-time", build(f -> f.seq(f.date(), f.chars("Tt"), f.time())),
            "uuid", build(f -> f.seq(f.times(8, () -> f.chars(HEX)), f.chars("-"), f.times(4, () -> f.chars(HEX)), f.chars("-"),
                    f.times(4, () -> f.chars(HEX)), f.chars("-"), f.times(4, () -> f.chars(HEX)), f.chars("-"),
                    f.times(12, () -> f.chars(HEX)))));
    /** The state before the first byte. */
    static final long START = 1L << 63;

    private final List<String> classes = new ArrayList<>();
    private final List<Long> follow = new ArrayList<>();
    private long first;
    private long last;
    private boolean empty;

    private record Part(long first, long last, boolean nullable) {}

    private interface Pattern {
        Part of(StringFormat f);
    }

    private static StringFormat build(Pattern pattern) {
        StringFormat f = new StringFormat();
        Part whole = pattern.of(f);
        f.first = whole.first;
        f.last = whole.last;
        f.empty = whole.nullable;
        if (f.classes.size() > 63) throw new IllegalStateException("a format pattern of more than 63 positions");
        return f;
    }

    /** The state after one more byte from {@code state}; 0 when the byte does not fit. */
    long step(long state, byte b) {
        long from = state == START ? first : 0;
        if (state != START) {
            for (long s = state; s != 0; s &= s - 1) from |= follow.get(Long.numberOfTrailingZeros(s));
        }
        long next = 0;
        for (long s = from; s != 0; s &= s - 1) {
            int position = Long.numberOfTrailingZeros(s);
            if (b >= 0 && classes.get(position).indexOf(b) >= 0) next |= 1L << position;
        }
        return next;
    }

    /** Whether the text read up to {@code state} is a whole one. */
    boolean accepts(long state) {
        return state == START ? empty : (state & last) != 0;
    }

    private Part date() {
        return seq(times(4, () -> chars(DIGITS)), chars("-"), times(2, () -> chars(DIGITS)), chars("-"),
                times(2, () -> chars(DIGITS)));
    }

    private Part time() {
        Part clock = seq(times(2, () -> chars(DIGITS)), chars(":"), times(2, () -> chars(DIGITS)), chars(":"),
                times(2, () -> chars(DIGITS)));
        Part fraction = optional(seq(chars("."), plus(chars(DIGITS))));
        Part zone = optional(alternative(chars("Zz"), seq(chars("+-"), times(2, () -> chars(DIGITS)), chars(":"),
                times(2, () -> chars(DIGITS)))));
        return seq(clock, fraction, zone);
    }

    private Part chars(String allowed) {
        int position = classes.size();
        classes.add(allowed);
        follow.add(0L);
        return new Part(1L << position, 1L << position, false);
    }

    private Part seq(Part... parts) {
        Part a = parts[0];
        for (int i = 1; i < parts.length; i++) {
            Part b = parts[i];
            for (long s = a.last; s != 0; s &= s - 1) {
                int p = Long.numberOfTrailingZeros(s);
                follow.set(p, follow.get(p) | b.first);
            }
            a = new Part(a.first | (a.nullable ? b.first : 0), b.last | (b.nullable ? a.last : 0), a.nullable && b.nullable);
        }
        return a;
    }

    private Part times(int n, java.util.function.Supplier<Part> part) {
        Part[] parts = new Part[n];
        for (int i = 0; i < n; i++) parts[i] = part.get();
        return seq(parts);
    }

    private Part alternative(Part a, Part b) {
        return new Part(a.first | b.first, a.last | b.last, a.nullable || b.nullable);
    }

    private Part optional(Part a) {
        return new Part(a.first, a.last, true);
    }

    private Part plus(Part a) {
        for (long s = a.last; s != 0; s &= s - 1) {
            int p = Long.numberOfTrailingZeros(s);
            follow.set(p, follow.get(p) | a.first);
        }
        return a;
    }
}
