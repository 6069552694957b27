package dev.kiln.api.tokenizer;

import java.util.OptionalInt;

/**
 * Text to token ids and back, for one model's vocabulary. Thread-safe.
 */
public interface Tokenizer {
    /** Number of token ids, added tokens included. */
    int vocabSize();

    /**
     * Encodes text. Special tokens written in the text (e.g. {@code <|im_start|>}) are recognised as such.
     *
     * @param addSpecialTokens whether to add the tokenizer's own prefix tokens (BOS) as its post-processor says
     */
    int[] encode(String text, boolean addSpecialTokens);

    /** Decodes ids to text, optionally dropping special tokens. */
    String decode(int[] ids, boolean skipSpecialTokens);

    /** The id of a token string (special or normal), if it is in the vocabulary. */
    OptionalInt tokenId(String token);

    /** The token string of an id (in the vocabulary's own byte-level spelling). */
    String tokenString(int id);

    /** Whether the id is a special (control) token. */
    boolean isSpecial(int id);

    /**
     * The bytes of text the token stands for (a byte-level token may hold part of a UTF-8 character). The default
     * decodes the token alone, which is exact only for tokens of whole characters; byte-level tokenizers override it.
     *
     * @throws IllegalArgumentException when the id is not in the vocabulary
     */
    default byte[] tokenBytes(int id) {
        return decode(new int[] {id}, false).getBytes(java.nio.charset.StandardCharsets.UTF_8);
    }

    /** A new detokenizer for one streamed sequence. */
    IncrementalDetokenizer newDetokenizer(boolean skipSpecialTokens);
}
