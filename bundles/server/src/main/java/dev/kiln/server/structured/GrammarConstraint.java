package dev.kiln.server.structured;

import dev.kiln.api.sampling.LogitsProcessor;
import dev.kiln.api.sampling.SequenceView;
import dev.kiln.api.tokenizer.Tokenizer;
import java.util.Arrays;

/**
 * A request's answer held to a grammar: OpenAI's JSON mode ({@code response_format: {"type": "json_object"}}, any
 * JSON object) or structured output ({@code json_schema}, an object that follows the schema). Before each token is
 * chosen, every token that cannot continue an accepted text from the text so far gets a logit of minus infinity.
 * Special tokens are never part of the text; the model's end-of-sequence tokens are allowed only once the text is
 * complete, and then nothing else is, so an answer that ends by itself is an accepted text; one cut by
 * {@code max_tokens} is the beginning of one.
 *
 * <p>When the prompt opened a reasoning block ({@code <think>}), the constraint starts after the token that closes
 * it, so the model reasons freely and answers in JSON.
 *
 * <p>One instance serves one sequence: it keeps the recognizer's state after the tokens it has seen and feeds it only
 * the new ones, starting over should the output not continue what it saw.
 */
public final class GrammarConstraint implements LogitsProcessor {
    private final VocabularyBytes vocabulary;
    private final int startAfter;
    private final Recognizer start;
    private final Recognizer text;
    /** The state before the token {@link #text} reads now, to go back to should the token not fit. */
    private final Recognizer beforeToken;
    /** How many output tokens {@link #text} has read, the last of them, and whether the text has begun. */
    private int seen;
    private int lastSeen = -1;
    private boolean begun;

    private GrammarConstraint(Tokenizer tokenizer, int startAfter, Recognizer start) {
        this.vocabulary = VocabularyBytes.of(tokenizer);
        this.startAfter = startAfter;
        this.start = start;
        this.text = start.copy();
        this.beforeToken = start.copy();
    }

    /**
     * JSON mode: any JSON object.
     *
     * @param tokenizer  the served model's tokenizer
     * @param startAfter the token after which the JSON begins (the one closing a reasoning block the prompt opened),
     *                   or -1 to constrain from the first output token
     */
    public static GrammarConstraint jsonObject(Tokenizer tokenizer, int startAfter) {
        return new GrammarConstraint(tokenizer, startAfter, new JsonPrefix());
    }

    /** Structured output: a JSON object that follows the schema (see {@link #compileSchema}). */
    public static GrammarConstraint jsonSchema(Tokenizer tokenizer, int startAfter, JsonSchema schema) {
        return new GrammarConstraint(tokenizer, startAfter, new SchemaPrefix(schema));
    }

    /**
     * Compiles a JSON schema for {@link #jsonSchema}; the same schema text gives the same compiled schema for a
     * while, so that requests with one schema share what was computed for it.
     *
     * @throws IllegalArgumentException naming a keyword that is not supported, or what makes the schema invalid
     */
    public static JsonSchema compileSchema(com.google.gson.JsonObject schema) {
        return JsonSchema.compileShared(schema);
    }

    @Override
    public boolean appliesTo(SequenceView sequence) {
        return true; // decided from the request alone: its tokens are chosen where the logits are masked
    }

    @Override
    public void process(float[] logits, SequenceView sequence) {
        if (!catchUp(sequence.outputTokens())) return; // still reasoning
        boolean complete = text.complete();
        // Which tokens fit depends on the recognizer's state alone, and a generation passes through few states
        // (inside a string, after a value, ...) again and again: the vocabulary keeps the masks of recent states.
        long[] fits = complete ? null : vocabulary.mask(text.grammar(), text.stateKey(), this::computeMask);
        int[] ends = sequence.endOfSequenceTokens();
        if (complete) {
            // Only the end: the model's end-of-sequence tokens, or any special token where the engine does not say
            // which those are.
            for (int id = 0; id < logits.length; id++) {
                boolean end = ends.length == 0 ? vocabulary.isSpecial(id) : contains(ends, id);
                if (!end) logits[id] = Float.NEGATIVE_INFINITY;
            }
        } else {
            // The kept mask a word (64 tokens) at a time: a word of none is filled, a word of all left as it is.
            // Special tokens have no bit in it, so they are refused with the rest.
            int covered = Math.min(logits.length, vocabulary.size());
            for (int w = 0, base = 0; base < covered; w++, base += 64) {
                long word = fits[w];
                int end = Math.min(base + 64, covered);
                if (word == 0) {
                    Arrays.fill(logits, base, end, Float.NEGATIVE_INFINITY);
                } else if (word != -1L) {
                    for (int id = base; id < end; id++) if ((word >>> id & 1) == 0) logits[id] = Float.NEGATIVE_INFINITY;
                }
            }
            Arrays.fill(logits, covered, logits.length, Float.NEGATIVE_INFINITY); // rows past the vocabulary
            for (int id : ends) if (id < logits.length) logits[id] = Float.NEGATIVE_INFINITY;
        }
        if (!anyAllowed(logits)) {
            // Nothing in this vocabulary continues the text (a model's vocabulary without some single byte): the
            // special tokens let the sequence end rather than fail.
            for (int id = 0; id < logits.length; id++) if (vocabulary.isSpecial(id)) logits[id] = 0;
        }
    }

    private static boolean anyAllowed(float[] logits) {
        for (float l : logits) if (l != Float.NEGATIVE_INFINITY) return true;
        return false;
    }

    /**
     * The tokens (special ones aside) that can continue the text from the recognizer's state, one bit each. Three
     * shortcuts, all exact: most tokens are refused at their first byte (256 bytes tried once, not every token) or,
     * after a blank that fits (BPE words start with a space), at their second (the pairs tried once for each first
     * byte that fits), and inside a string a token of plain text fits without reading it.
     */
    private long[] computeMask() {
        Recognizer here = text.copy();
        boolean[] firstByteFits = new boolean[256];
        for (int b = 0; b < 256; b++) {
            firstByteFits[b] = text.accept((byte) b);
            text.copyFrom(here);
        }
        boolean[][] pairFits = new boolean[256][];
        boolean plainString = text.inPlainString();
        long[] fits = new long[(vocabulary.size() + 63) >>> 6];
        for (int id = 0; id < vocabulary.size(); id++) {
            if (vocabulary.isSpecial(id)) continue;
            int firstByte = vocabulary.firstByte(id);
            int secondByte = vocabulary.secondByte(id);
            boolean ok;
            if (firstByte < 0 || !firstByteFits[firstByte]) {
                ok = false;
            } else if (plainString && vocabulary.isPlainText(id)) {
                ok = true;
            } else if (secondByte >= 0 && !plainString && !pairFits(pairFits, firstByte, here)[secondByte]) {
                ok = false;
            } else {
                ok = text.accept(vocabulary.bytes(id));
                text.copyFrom(here);
            }
            if (ok) fits[id >>> 6] |= 1L << id;
        }
        return fits;
    }

    /** Which second bytes fit after the first byte {@code first}, tried once a step for each first byte that fits. */
    private boolean[] pairFits(boolean[][] pairs, int first, Recognizer here) {
        boolean[] row = pairs[first];
        if (row != null) return row;
        row = new boolean[256];
        text.accept((byte) first);
        Recognizer after = text.copy();
        for (int b = 0; b < 256; b++) {
            row[b] = text.accept((byte) b);
            text.copyFrom(after);
        }
        text.copyFrom(here);
        pairs[first] = row;
        return row;
    }

    private static boolean contains(int[] tokens, int token) {
        for (int t : tokens) if (t == token) return true;
        return false;
    }

    /**
     * Feeds the tokens not yet read to the recognizer; false while the JSON has not begun. Special tokens add no
     * text; a token the recognizer refuses (chosen before this constraint saw the sequence) leaves the state as the
     * last token that fitted left it.
     */
    private boolean catchUp(int[] output) {
        if (output.length < seen || seen > 0 && output[seen - 1] != lastSeen) {
            text.copyFrom(start);
            seen = 0;
            begun = false;
        }
        if (startAfter < 0) begun = true;
        for (; seen < output.length; seen++) {
            int token = output[seen];
            if (!begun) {
                begun = token == startAfter;
                continue;
            }
            byte[] bytes = vocabulary.bytes(token);
            if (bytes == null || vocabulary.isSpecial(token)) continue;
            beforeToken.copyFrom(text);
            if (!text.accept(bytes)) text.copyFrom(beforeToken);
        }
        lastSeen = output.length > 0 ? output[output.length - 1] : -1;
        return begun;
    }
}
