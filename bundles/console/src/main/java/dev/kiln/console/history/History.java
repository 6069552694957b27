package dev.kiln.console.history;

import java.util.ArrayList;
import java.util.List;

/** The most recent samples, oldest first, up to a fixed number; thread-safe. */
public final class History {
    private final Sample[] ring;
    private int next;
    private int size;

    public History(int capacity) {
        if (capacity < 1) throw new IllegalArgumentException("capacity must be positive");
        ring = new Sample[capacity];
    }

    public synchronized void add(Sample s) {
        ring[next] = s;
        next = (next + 1) % ring.length;
        size = Math.min(size + 1, ring.length);
    }

    /** The samples taken after {@code epochMillis}, oldest first. */
    public synchronized List<Sample> after(long epochMillis) {
        List<Sample> out = new ArrayList<>();
        for (int i = 0; i < size; i++) {
            Sample s = ring[(next - size + i + ring.length) % ring.length];
            if (s.epochMillis() > epochMillis) out.add(s);
        }
        return out;
    }
}
