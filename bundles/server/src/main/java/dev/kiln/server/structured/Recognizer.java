package dev.kiln.server.structured;

/**
 * A byte-level recognizer of the texts a constrained request may produce: it accepts exactly the byte strings that
 * begin such a text and tells when the text is complete. Its state can be copied, so that a caller tries one token
 * after another from the same point, and compared, so that what fits at a point is computed once per point.
 */
interface Recognizer {
    /** Feeds one byte; false when the text so far plus this byte begins no accepted text (then copy the state back). */
    boolean accept(byte b);

    /** Feeds every byte; false as soon as one does not fit. */
    default boolean accept(byte[] bytes) {
        for (byte b : bytes) {
            if (!accept(b)) return false;
        }
        return true;
    }

    /** Whether the text so far is a whole accepted text (after which only the end of sequence may come). */
    boolean complete();

    /**
     * Whether any byte from 0x20 up other than a quote or a backslash is accepted here and changes nothing (inside a
     * string without further conditions on its text).
     */
    boolean inPlainString();

    /** Makes this recognizer's state equal to {@code other}'s (of the same class and grammar). */
    void copyFrom(Recognizer other);

    /** A fresh recognizer of the same grammar in this one's state. */
    Recognizer copy();

    /** A value equal for equal states (and only those): what fits is a function of it. */
    Object stateKey();

    /** What fits depends on this as well as on the state: the grammar (its identity). */
    Object grammar();
}
