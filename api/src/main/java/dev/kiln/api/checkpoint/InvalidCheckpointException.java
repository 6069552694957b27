package dev.kiln.api.checkpoint;

import java.nio.file.Path;

/**
 * A checkpoint file that Kiln refuses to load. The message names the file, the field or tensor at fault, and
 * what is wrong with it, so a user can act on it without a debugger.
 */
public class InvalidCheckpointException extends RuntimeException {
    private final Path file;
    private final String field;

    /**
     * @param file   the offending file
     * @param field  the tensor name or header field at fault (may be {@code null} for the file as a whole)
     * @param reason what is wrong
     */
    public InvalidCheckpointException(Path file, String field, String reason) {
        super(file + (field == null ? "" : ": '" + field + "'") + ": " + reason);
        this.file = file;
        this.field = field;
    }

    /** Same, with the underlying cause. */
    public InvalidCheckpointException(Path file, String field, String reason, Throwable cause) {
        this(file, field, reason);
        initCause(cause);
    }

    /** The offending file. */
    public Path file() {
        return file;
    }

    /** The tensor or header field at fault, or {@code null}. */
    public String field() {
        return field;
    }
}
