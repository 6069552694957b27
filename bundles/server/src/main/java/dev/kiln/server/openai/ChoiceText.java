package dev.kiln.server.openai;

import dev.kiln.api.tokenizer.IncrementalDetokenizer;
import dev.kiln.api.tokenizer.Tokenizer;
import java.util.List;

/**
 * Turns one choice's tokens into the text a client sees, incrementally: UTF-8-safe detokenization, stop strings
 * (the text ends before the first one; text that might begin a stop string is held back until it cannot), and
 * DeepSeek-R1 reasoning ({@code <think>...</think>} goes to {@code reasoning_content}, the rest to {@code content};
 * a template that already opened {@code <think>} in the prompt starts the choice inside the reasoning).
 *
 * <p>Without a tokenizer every token becomes {@code token_id:N}.
 */
final class ChoiceText {
    private static final String THINK_OPEN = "<think>";
    private static final String THINK_CLOSE = "</think>";

    /** Text released by one step, split by channel. */
    record Delta(String reasoning, String content) {
        boolean isEmpty() {
            return reasoning.isEmpty() && content.isEmpty();
        }
    }

    private final IncrementalDetokenizer detokenizer;
    private final List<String> stops;
    private final int holdBack;
    private final boolean parseReasoning;
    private final StringBuilder pending = new StringBuilder();
    private final StringBuilder reasoningText = new StringBuilder();
    private final StringBuilder contentText = new StringBuilder();
    private boolean inReasoning;
    private boolean reasoningDecided;
    private boolean stopped;

    /**
     * @param tokenizer           the model's tokenizer, or null to spell tokens as {@code token_id:N}
     * @param stops               stop strings
     * @param parseReasoning      whether to separate reasoning
     * @param startsInReasoning   whether the prompt already opened {@code <think>}
     */
    ChoiceText(Tokenizer tokenizer, boolean skipSpecialTokens, List<String> stops, boolean parseReasoning,
               boolean startsInReasoning) {
        this.detokenizer = tokenizer == null ? null : tokenizer.newDetokenizer(skipSpecialTokens);
        this.stops = List.copyOf(stops);
        int longest = 0;
        for (String s : stops) longest = Math.max(longest, s.length());
        this.parseReasoning = parseReasoning;
        this.holdBack = Math.max(longest - 1, parseReasoning ? THINK_CLOSE.length() - 1 : 0);
        this.inReasoning = parseReasoning && startsInReasoning;
        this.reasoningDecided = !parseReasoning || startsInReasoning;
    }

    /** Whether a stop string ended the text. */
    boolean stopped() {
        return stopped;
    }

    String reasoning() {
        return reasoningText.toString();
    }

    String content() {
        return contentText.toString();
    }

    /** Adds tokens; returns the text that became final. */
    Delta add(int[] tokens) {
        if (stopped) return new Delta("", "");
        for (int t : tokens) {
            pending.append(detokenizer == null ? "token_id:" + t : detokenizer.add(t));
        }
        return release(false);
    }

    /** Flushes everything held back at the end of the choice. */
    Delta finish() {
        if (!stopped && detokenizer != null) pending.append(detokenizer.flush());
        return release(true);
    }

    private Delta release(boolean end) {
        StringBuilder reasoning = new StringBuilder();
        StringBuilder content = new StringBuilder();
        if (!stopped) {
            int stopAt = firstStop();
            if (stopAt >= 0) {
                pending.setLength(stopAt);
                stopped = true;
                end = true;
            }
        }
        while (pending.length() > 0) {
            if (!reasoningDecided) {
                // Reasoning starts only if the output opens with <think>; wait until that can be told.
                if (pending.length() < THINK_OPEN.length() && THINK_OPEN.startsWith(pending.toString()) && !end) break;
                reasoningDecided = true;
                if (pending.toString().startsWith(THINK_OPEN)) {
                    pending.delete(0, THINK_OPEN.length());
                    inReasoning = true;
                }
                continue;
            }
            if (inReasoning) {
                int close = pending.indexOf(THINK_CLOSE);
                if (close >= 0) {
                    reasoning.append(pending, 0, close);
                    pending.delete(0, close + THINK_CLOSE.length());
                    inReasoning = false;
                    continue;
                }
            }
            int safe = end ? pending.length() : Math.max(0, pending.length() - holdBack);
            if (safe == 0) break;
            (inReasoning ? reasoning : content).append(pending, 0, safe);
            pending.delete(0, safe);
        }
        reasoningText.append(reasoning);
        contentText.append(content);
        return new Delta(reasoning.toString(), content.toString());
    }

    private int firstStop() {
        int first = -1;
        for (String s : stops) {
            if (s.isEmpty()) continue;
            int at = pending.indexOf(s);
            if (at >= 0 && (first < 0 || at < first)) first = at;
        }
        return first;
    }
}
