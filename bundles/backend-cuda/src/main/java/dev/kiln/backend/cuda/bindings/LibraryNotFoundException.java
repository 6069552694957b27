package dev.kiln.backend.cuda.bindings;

/** A CUDA library, or a function in it, could not be found: the backend cannot run on this machine. */
public final class LibraryNotFoundException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** @param message what was missing and where it was looked for */
    public LibraryNotFoundException(String message) {
        super(message);
    }
}
