package dev.kiln.tokenizer.text;

import dev.kiln.tokenizer.bpe.ByteLevelAlphabet;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The {@code ByteLevel} pre-tokenizer: optionally prefixes a space, optionally splits with GPT-2's expression,
 * and spells every piece's UTF-8 bytes in the {@link ByteLevelAlphabet}.
 */
public final class ByteLevelPreTokenizer implements PreTokenizer {
    private static final Pattern GPT2 = OnigurumaPatterns.compile(OnigurumaPatterns.GPT2_PATTERN);

    private final boolean addPrefixSpace;
    private final boolean useRegex;

    public ByteLevelPreTokenizer(boolean addPrefixSpace, boolean useRegex) {
        this.addPrefixSpace = addPrefixSpace;
        this.useRegex = useRegex;
    }

    @Override
    public void split(String piece, Consumer<String> out) {
        // As in the reference, the space goes in front of every piece that reaches this step, not only the first.
        String text = addPrefixSpace && !piece.startsWith(" ") ? " " + piece : piece;
        if (text.isEmpty()) {
            return;
        }
        if (!useRegex) {
            out.accept(ByteLevelAlphabet.encode(text));
            return;
        }
        Matcher m = GPT2.matcher(text);
        int previous = 0;
        while (m.find()) {
            if (previous < m.start()) {
                out.accept(ByteLevelAlphabet.encode(text.substring(previous, m.start())));
            }
            if (m.start() < m.end()) {
                out.accept(ByteLevelAlphabet.encode(text.substring(m.start(), m.end())));
            }
            previous = m.end();
        }
        if (previous < text.length()) {
            out.accept(ByteLevelAlphabet.encode(text.substring(previous)));
        }
    }
}
