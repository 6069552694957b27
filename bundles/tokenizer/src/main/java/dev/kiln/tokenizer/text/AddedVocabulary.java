package dev.kiln.tokenizer.text;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Finds added tokens in text before it reaches the pre-tokenizer, as the {@code tokenizers} library does: first
 * the tokens marked not {@code normalized} in the raw text, then, after normalizing the text between them, the
 * {@code normalized} ones. At each position the leftmost match wins, and among matches starting there the longest.
 * Thread-safe.
 */
public final class AddedVocabulary {
    private final TokenTrie raw;
    private final TokenTrie normalizedTrie;
    private final Normalizer normalizer;

    /**
     * @param tokens     the added tokens
     * @param normalizer the tokenizer's normalizer, or null
     */
    public AddedVocabulary(List<AddedToken> tokens, Normalizer normalizer) {
        this.normalizer = normalizer;
        List<AddedToken> rawTokens = new ArrayList<>();
        List<AddedToken> normalizedTokens = new ArrayList<>();
        for (AddedToken token : tokens) {
            if (token.content().isEmpty()) {
                continue;
            }
            if (token.normalized() && normalizer != null) {
                // Matched against normalized text, so the pattern is normalized too.
                normalizedTokens.add(new AddedToken(token.id(), normalizer.normalize(token.content()), token.special(),
                        token.singleWord(), token.lstrip(), token.rstrip(), true));
            } else if (token.normalized()) {
                normalizedTokens.add(token);
            } else {
                rawTokens.add(token);
            }
        }
        this.raw = new TokenTrie(rawTokens);
        this.normalizedTrie = new TokenTrie(normalizedTokens);
    }

    /** Receives the parts of a text in order. */
    public interface Segments {
        /** A stretch of normalized text with no added token in it. */
        void text(String normalized);

        /** An added token. */
        void token(int id);
    }

    /** Splits the text into added tokens and normalized stretches between them. */
    public void split(String text, Segments out) {
        raw.split(text, new Segments() {
            @Override
            public void text(String between) {
                String normalized = normalizer == null ? between : normalizer.normalize(between);
                normalizedTrie.split(normalized, out);
            }

            @Override
            public void token(int id) {
                out.token(id);
            }
        });
    }

    /** A character trie of token contents with the matching rules of one pass. */
    private static final class TokenTrie {
        private final Node root = new Node();
        private final boolean[] firstChars = new boolean[Character.MAX_VALUE + 1];
        private final boolean empty;

        TokenTrie(List<AddedToken> tokens) {
            for (AddedToken token : tokens) {
                Node node = root;
                for (int i = 0; i < token.content().length(); i++) {
                    node = node.children.computeIfAbsent(token.content().charAt(i), c -> new Node());
                }
                node.token = token;
                firstChars[token.content().charAt(0)] = true;
            }
            empty = tokens.isEmpty();
        }

        void split(String text, Segments out) {
            if (empty) {
                emitText(text, 0, text.length(), out);
                return;
            }
            int emitted = 0;
            int position = 0;
            int n = text.length();
            while (position < n) {
                if (!firstChars[text.charAt(position)]) {
                    position++;
                    continue;
                }
                AddedToken match = null;
                int matchEnd = -1;
                Node node = root;
                for (int i = position; i < n; i++) {
                    node = node.children.get(text.charAt(i));
                    if (node == null) {
                        break;
                    }
                    if (node.token != null) {
                        match = node.token;
                        matchEnd = i + 1;
                    }
                }
                if (match == null) {
                    position++;
                    continue;
                }
                int start = position;
                int stop = matchEnd;
                if (match.singleWord() && (touchesWordBefore(text, start) || touchesWordAfter(text, stop))) {
                    position = matchEnd;
                    continue;
                }
                if (match.lstrip()) {
                    while (start > emitted && UnicodeWhiteSpace.is(text.codePointBefore(start))) {
                        start -= Character.charCount(text.codePointBefore(start));
                    }
                }
                if (match.rstrip()) {
                    while (stop < n && UnicodeWhiteSpace.is(text.codePointAt(stop))) {
                        stop += Character.charCount(text.codePointAt(stop));
                    }
                }
                emitText(text, emitted, start, out);
                out.token(match.id());
                emitted = stop;
                position = stop;
            }
            emitText(text, emitted, n, out);
        }

        private static void emitText(String text, int start, int end, Segments out) {
            if (start < end) {
                out.text(text.substring(start, end));
            }
        }

        private static boolean touchesWordBefore(String text, int index) {
            return index > 0 && isWordCharacter(text.codePointBefore(index));
        }

        private static boolean touchesWordAfter(String text, int index) {
            return index < text.length() && isWordCharacter(text.codePointAt(index));
        }

        /** Unicode {@code \w} as the reference's Rust regex reads it: alphabetic, marks, digits, connectors. */
        private static boolean isWordCharacter(int cp) {
            if (Character.isAlphabetic(cp) || cp == 0x200C || cp == 0x200D) {
                return true;
            }
            int type = Character.getType(cp);
            return type == Character.DECIMAL_DIGIT_NUMBER || type == Character.NON_SPACING_MARK
                    || type == Character.COMBINING_SPACING_MARK || type == Character.ENCLOSING_MARK
                    || type == Character.CONNECTOR_PUNCTUATION;
        }
    }

    private static final class Node {
        final Map<Character, Node> children = new HashMap<>(4);
        AddedToken token;
    }
}
