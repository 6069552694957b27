package dev.kiln.server.structured;

import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.api.sampling.SequenceView;
import dev.kiln.api.tokenizer.IncrementalDetokenizer;
import dev.kiln.api.tokenizer.Tokenizer;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.OptionalInt;
import java.util.Set;

/** A small vocabulary of text pieces with a few special tokens, as the constraints see a tokenizer, for tests. */
record TestVocabulary(String[] pieces, Set<Integer> special) implements Tokenizer {
    @Override public int vocabSize() { return pieces.length; }
    @Override public byte[] tokenBytes(int id) { return pieces[id].getBytes(StandardCharsets.UTF_8); }
    @Override public boolean isSpecial(int id) { return special.contains(id); }
    @Override public int[] encode(String text, boolean addSpecialTokens) { throw new UnsupportedOperationException(); }
    @Override public String decode(int[] ids, boolean skipSpecialTokens) { throw new UnsupportedOperationException(); }
    @Override public OptionalInt tokenId(String token) { return OptionalInt.empty(); }
    @Override public String tokenString(int id) { return pieces[id]; }
    @Override public IncrementalDetokenizer newDetokenizer(boolean skipSpecialTokens) { throw new UnsupportedOperationException(); }

    /** The text of the output's tokens, special ones left out. */
    String text(List<Integer> output) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        for (int t : output) if (!isSpecial(t)) bytes.writeBytes(tokenBytes(t));
        return bytes.toString(StandardCharsets.UTF_8);
    }

    /** A sequence's output as an engine shows it, with the end-of-sequence tokens it names (none: it names none). */
    record View(int[] outputTokens, int... endOfSequenceTokens) implements SequenceView {
        View(List<Integer> output, int... ends) {
            this(output.stream().mapToInt(Integer::intValue).toArray(), ends);
        }

        @Override public int[] promptTokens() { return new int[] {0}; }
        @Override public SamplingParams params() { return SamplingParams.GREEDY; }
        @Override public int[] endOfSequenceTokens() { return endOfSequenceTokens.clone(); }
    }
}
