package dev.kiln.tokenizer.hf;

import dev.kiln.api.tokenizer.IncrementalDetokenizer;
import java.util.Arrays;

/**
 * Streams the bytes of tokens as text, holding back a trailing UTF-8 sequence until it is complete: a character whose
 * bytes span several tokens (a CJK character, an emoji) comes out whole, in the call that completes it. Bytes that can
 * never become a valid character are released at once as U+FFFD, so the concatenated output equals decoding all
 * ids at once.
 */
final class Utf8StreamDetokenizer implements IncrementalDetokenizer {
    private final HfTokenizer tokenizer;
    private final boolean skipSpecialTokens;
    private byte[] pending = new byte[16];
    private int length;

    Utf8StreamDetokenizer(HfTokenizer tokenizer, boolean skipSpecialTokens) {
        this.tokenizer = tokenizer;
        this.skipSpecialTokens = skipSpecialTokens;
    }

    @Override
    public String add(int tokenId) {
        if (skipSpecialTokens && tokenizer.isSpecial(tokenId)) {
            return "";
        }
        byte[] bytes = tokenizer.bytesOf(tokenId);
        if (length + bytes.length > pending.length) {
            pending = Arrays.copyOf(pending, Math.max(pending.length * 2, length + bytes.length));
        }
        System.arraycopy(bytes, 0, pending, length, bytes.length);
        length += bytes.length;
        int complete = completePrefix(pending, length);
        if (complete == 0) {
            return "";
        }
        String text = LossyUtf8.decode(pending, 0, complete);
        System.arraycopy(pending, complete, pending, 0, length - complete);
        length -= complete;
        return text;
    }

    @Override
    public String flush() {
        String text = LossyUtf8.decode(pending, 0, length);
        length = 0;
        return text;
    }

    /**
     * The length of the longest prefix that ends outside any character still being spelled: everything but a trailing
     * lead byte followed by fewer continuation bytes than it announces, all of them valid so far.
     */
    static int completePrefix(byte[] bytes, int length) {
        for (int back = 1; back <= 4 && back <= length; back++) {
            int lead = bytes[length - back] & 0xFF;
            if (lead >= 0x80 && lead <= 0xBF) {
                continue;
            }
            int expected = lead < 0x80 ? 1 : lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3
                    : lead >= 0xF0 && lead <= 0xF4 ? 4 : 0;
            if (expected <= back) {
                // Complete, or a byte that starts nothing valid: nothing to wait for.
                return length;
            }
            if (back >= 2 && !validSecondByte(lead, bytes[length - back + 1] & 0xFF)) {
                return length;
            }
            return length - back;
        }
        return length;
    }

    /** The second byte of a sequence has a narrower range after some lead bytes (no overlongs, no surrogates). */
    private static boolean validSecondByte(int lead, int second) {
        return switch (lead) {
            case 0xE0 -> second >= 0xA0 && second <= 0xBF;
            case 0xED -> second >= 0x80 && second <= 0x9F;
            case 0xF0 -> second >= 0x90 && second <= 0xBF;
            case 0xF4 -> second >= 0x80 && second <= 0x8F;
            default -> second >= 0x80 && second <= 0xBF;
        };
    }
}
