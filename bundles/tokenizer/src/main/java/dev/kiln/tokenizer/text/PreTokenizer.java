package dev.kiln.tokenizer.text;

import java.util.function.Consumer;

/**
 * Splits normalized text into the words the BPE model encodes one at a time (the {@code pre_tokenizer} of a
 * {@code tokenizer.json}). A step may also rewrite the pieces (byte-level spelling).
 */
@FunctionalInterface
public interface PreTokenizer {
    /** Emits the non-empty pieces of {@code piece}, in order. */
    void split(String piece, Consumer<String> out);

    /** Applies steps in order, each to every piece the previous one produced. */
    static PreTokenizer sequence(java.util.List<PreTokenizer> steps) {
        PreTokenizer[] chain = steps.toArray(PreTokenizer[]::new);
        return (piece, out) -> apply(chain, 0, piece, out);
    }

    private static void apply(PreTokenizer[] chain, int step, String piece, Consumer<String> out) {
        if (step == chain.length) {
            out.accept(piece);
            return;
        }
        chain[step].split(piece, next -> apply(chain, step + 1, next, out));
    }
}
