package dev.kiln.backend.cuda.internal;

import java.lang.ref.Reference;
import java.lang.ref.ReferenceQueue;
import java.lang.ref.WeakReference;
import java.util.HashSet;
import java.util.Set;

/**
 * Device memory owned by objects that the API gives no close to (a model's rotary embedding): each owner's release
 * runs once the owner has been collected, at the next {@link #expunge}, or at {@link #close} for those still alive.
 * A release must not refer to its owner, or the owner is never collected.
 *
 * @param <T> the owners' type
 */
public final class ReleasedWhenCollected<T> implements AutoCloseable {
    private final ReferenceQueue<T> collected = new ReferenceQueue<>();
    private final Set<Owned<T>> owned = new HashSet<>();

    private static final class Owned<T> extends WeakReference<T> {
        final Runnable release;

        Owned(T owner, Runnable release, ReferenceQueue<T> queue) {
            super(owner, queue);
            this.release = release;
        }
    }

    /** Tracks an owner; returns the reference that its collection enqueues. */
    public synchronized Reference<T> track(T owner, Runnable release) {
        Owned<T> reference = new Owned<>(owner, release, collected);
        owned.add(reference);
        return reference;
    }

    /**
     * Runs the releases of the owners collected since the last call.
     *
     * @throws RuntimeException the first release's failure, the others suppressed (every one runs)
     */
    @SuppressWarnings("unchecked")
    public synchronized void expunge() {
        java.util.List<Runnable> releases = new java.util.ArrayList<>();
        for (Reference<? extends T> r; (r = collected.poll()) != null; ) {
            if (owned.remove(r)) releases.add(((Owned<T>) r).release);
        }
        Cleanup.all(releases.toArray(Runnable[]::new));
    }

    /** How many owners are tracked and not yet released. */
    public synchronized int size() {
        return owned.size();
    }

    /** Runs every release not yet run, collected or not. */
    @Override
    public synchronized void close() {
        Runnable[] releases = owned.stream().map(o -> o.release).toArray(Runnable[]::new);
        owned.clear();
        Cleanup.all(releases);
    }
}
