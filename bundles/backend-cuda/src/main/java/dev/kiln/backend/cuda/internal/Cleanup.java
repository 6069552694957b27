package dev.kiln.backend.cuda.internal;

/**
 * Releases several resources so that one failing does not leak the rest: after a device fault every release that
 * synchronizes the stream throws, and the context itself must still be released.
 */
public final class Cleanup {
    private Cleanup() {}

    /**
     * Runs every step in order, whatever the earlier ones threw.
     *
     * @throws RuntimeException the first step's failure, with the later ones' suppressed
     */
    public static void all(Runnable... steps) {
        RuntimeException first = null;
        for (Runnable step : steps) {
            try {
                step.run();
            } catch (RuntimeException e) {
                if (first == null) first = e;
                else first.addSuppressed(e);
            }
        }
        if (first != null) throw first;
    }
}
