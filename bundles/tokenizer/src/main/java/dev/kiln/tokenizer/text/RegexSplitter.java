package dev.kiln.tokenizer.text;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The {@code Split} pre-tokenizer: cuts a piece at the matches of a pattern and keeps, drops or attaches the
 * matches according to a {@link SplitBehavior}; {@code invert} swaps the roles of matches and the text between.
 */
public final class RegexSplitter implements PreTokenizer {
    private final Pattern pattern;
    private final SplitBehavior behavior;
    private final boolean invert;

    public RegexSplitter(Pattern pattern, SplitBehavior behavior, boolean invert) {
        this.pattern = pattern;
        this.behavior = behavior;
        this.invert = invert;
    }

    @Override
    public void split(String piece, Consumer<String> out) {
        if (piece.isEmpty()) {
            return;
        }
        // Fast path for the common case: isolated matches, nothing to merge, emitted as found.
        if (behavior == SplitBehavior.ISOLATED) {
            Matcher m = pattern.matcher(piece);
            int previous = 0;
            while (m.find()) {
                emit(piece, previous, m.start(), out);
                emit(piece, m.start(), m.end(), out);
                previous = m.end();
            }
            emit(piece, previous, piece.length(), out);
            return;
        }
        List<int[]> spans = spans(piece);
        for (int[] span : merge(spans)) {
            emit(piece, span[0], span[1], out);
        }
    }

    private static void emit(String piece, int start, int end, Consumer<String> out) {
        if (start < end) {
            out.accept(piece.substring(start, end));
        }
    }

    /** Every span of the piece in order as {start, end, 1 if a match else 0}. */
    private List<int[]> spans(String piece) {
        List<int[]> spans = new ArrayList<>();
        Matcher m = pattern.matcher(piece);
        int previous = 0;
        while (m.find()) {
            if (previous != m.start()) {
                spans.add(new int[] {previous, m.start(), invert ? 1 : 0});
            }
            spans.add(new int[] {m.start(), m.end(), invert ? 0 : 1});
            previous = m.end();
        }
        if (previous != piece.length()) {
            spans.add(new int[] {previous, piece.length(), invert ? 1 : 0});
        }
        return spans;
    }

    private List<int[]> merge(List<int[]> spans) {
        List<int[]> result = new ArrayList<>();
        switch (behavior) {
            case ISOLATED -> result.addAll(spans);
            case REMOVED -> spans.stream().filter(s -> s[2] == 0).forEach(result::add);
            case MERGED_WITH_PREVIOUS -> {
                boolean previousMatch = false;
                for (int[] s : spans) {
                    if (s[2] == 1 && !previousMatch && !result.isEmpty()) {
                        result.getLast()[1] = s[1];
                    } else {
                        result.add(s.clone());
                    }
                    previousMatch = s[2] == 1;
                }
            }
            case MERGED_WITH_NEXT -> {
                boolean previousMatch = false;
                for (int i = spans.size() - 1; i >= 0; i--) {
                    int[] s = spans.get(i);
                    if (s[2] == 1 && !previousMatch && !result.isEmpty()) {
                        result.getLast()[0] = s[0];
                    } else {
                        result.add(s.clone());
                    }
                    previousMatch = s[2] == 1;
                }
                java.util.Collections.reverse(result);
            }
            case CONTIGUOUS -> {
                boolean previousMatch = false;
                for (int[] s : spans) {
                    if ((s[2] == 1) == previousMatch && !result.isEmpty()) {
                        result.getLast()[1] = s[1];
                    } else {
                        result.add(s.clone());
                    }
                    previousMatch = s[2] == 1;
                }
            }
        }
        return result;
    }
}
