package dev.kiln.tokenizer.hf;

/**
 * What the post-processor adds around an encoded single sequence when special tokens are requested.
 *
 * @param prefix ids before the text (BOS, CLS)
 * @param suffix ids after the text (EOS, SEP)
 */
record PostProcessing(int[] prefix, int[] suffix) {
    static final PostProcessing NONE = new PostProcessing(new int[0], new int[0]);

    /** This processing applied around the result of {@code inner}, as a sequence of processors does. */
    PostProcessing around(PostProcessing inner) {
        int[] p = new int[prefix.length + inner.prefix.length];
        System.arraycopy(prefix, 0, p, 0, prefix.length);
        System.arraycopy(inner.prefix, 0, p, prefix.length, inner.prefix.length);
        int[] s = new int[inner.suffix.length + suffix.length];
        System.arraycopy(inner.suffix, 0, s, 0, inner.suffix.length);
        System.arraycopy(suffix, 0, s, inner.suffix.length, suffix.length);
        return new PostProcessing(p, s);
    }
}
