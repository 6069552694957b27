package dev.kiln.tokenizer.hf;

import dev.kiln.api.tokenizer.IncrementalDetokenizer;
import dev.kiln.api.tokenizer.Tokenizer;
import dev.kiln.tokenizer.bpe.BpeModel;
import dev.kiln.tokenizer.bpe.ByteLevelAlphabet;
import dev.kiln.tokenizer.text.AddedToken;
import dev.kiln.tokenizer.text.AddedVocabulary;
import dev.kiln.tokenizer.text.PreTokenizer;
import java.io.ByteArrayOutputStream;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;

/**
 * A byte-level BPE tokenizer assembled from a {@code tokenizer.json}: added tokens are cut out first, the text
 * between them is normalized, pre-tokenized into words and each word encoded by the BPE model; decoding maps every
 * token back to its bytes. Thread-safe.
 */
public final class HfTokenizer implements Tokenizer {
    private static final byte[] NO_BYTES = new byte[0];

    private final BpeModel model;
    private final AddedVocabulary addedVocabulary;
    private final PreTokenizer preTokenizer;
    private final PostProcessing postProcessing;
    private final Map<String, Integer> addedIds = new HashMap<>();
    private final String[] tokens;
    private final byte[][] tokenBytes;
    private final BitSet special = new BitSet();

    HfTokenizer(BpeModel model, List<AddedToken> added, AddedVocabulary addedVocabulary, PreTokenizer preTokenizer,
                PostProcessing postProcessing) {
        this.model = model;
        this.addedVocabulary = addedVocabulary;
        this.preTokenizer = preTokenizer;
        this.postProcessing = postProcessing;
        int size = model.idLimit();
        for (AddedToken token : added) {
            size = Math.max(size, token.id() + 1);
        }
        tokens = new String[size];
        for (int id = 0; id < size; id++) {
            tokens[id] = model.token(id);
        }
        // An added token overrides the vocabulary's entry of the same id, as in the reference.
        for (AddedToken token : added) {
            tokens[token.id()] = token.content();
            addedIds.put(token.content(), token.id());
            if (token.special()) {
                special.set(token.id());
            }
        }
        tokenBytes = new byte[size][];
        for (int id = 0; id < size; id++) {
            if (tokens[id] != null) {
                tokenBytes[id] = ByteLevelAlphabet.decode(tokens[id]);
            }
        }
    }

    @Override
    public int vocabSize() {
        return tokens.length;
    }

    @Override
    public int[] encode(String text, boolean addSpecialTokens) {
        IntList ids = new IntList(text.length() / 3 + 16);
        if (addSpecialTokens) {
            ids.addAll(postProcessing.prefix());
        }
        addedVocabulary.split(text, new AddedVocabulary.Segments() {
            @Override
            public void text(String normalized) {
                if (preTokenizer == null) {
                    model.tokenize(normalized, ids);
                } else {
                    preTokenizer.split(normalized, word -> model.tokenize(word, ids));
                }
            }

            @Override
            public void token(int id) {
                ids.add(id);
            }
        });
        if (addSpecialTokens) {
            ids.addAll(postProcessing.suffix());
        }
        return ids.toArray();
    }

    @Override
    public String decode(int[] ids, boolean skipSpecialTokens) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream(ids.length * 4);
        for (int id : ids) {
            if (!(skipSpecialTokens && isSpecial(id))) {
                bytes.writeBytes(bytesOf(id));
            }
        }
        return LossyUtf8.decode(bytes.toByteArray(), 0, bytes.size());
    }

    /**
     * The bytes a token stands for in decoded text. An id without a token (models pad their embedding beyond the
     * vocabulary) stands for nothing, as the reference decoder skips it.
     */
    byte[] bytesOf(int id) {
        if (id < 0 || id >= tokenBytes.length || tokenBytes[id] == null) {
            return NO_BYTES;
        }
        return tokenBytes[id];
    }

    @Override
    public OptionalInt tokenId(String token) {
        Integer added = addedIds.get(token);
        if (added != null) {
            return OptionalInt.of(added);
        }
        int id = model.id(token);
        return id < 0 ? OptionalInt.empty() : OptionalInt.of(id);
    }

    @Override
    public String tokenString(int id) {
        if (id < 0 || id >= tokens.length || tokens[id] == null) {
            throw new IllegalArgumentException("token id " + id + " is not in the vocabulary");
        }
        return tokens[id];
    }

    @Override
    public byte[] tokenBytes(int id) {
        if (id < 0 || id >= tokens.length || tokenBytes[id] == null) {
            throw new IllegalArgumentException("token id " + id + " is not in the vocabulary");
        }
        return tokenBytes[id].clone();
    }

    @Override
    public boolean isSpecial(int id) {
        return id >= 0 && special.get(id);
    }

    @Override
    public IncrementalDetokenizer newDetokenizer(boolean skipSpecialTokens) {
        return new Utf8StreamDetokenizer(this, skipSpecialTokens);
    }

    @Override
    public String toString() {
        return "HfTokenizer[vocab=" + tokens.length + ", merges=" + model.mergeCount() + "]";
    }
}
