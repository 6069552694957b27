package dev.kiln.tokenizer.hf;

/**
 * Decodes UTF-8 replacing each maximal invalid subpart with one U+FFFD, the Unicode-recommended practice that the
 * reference decoder (Rust's {@code String::from_utf8_lossy}) follows. Java's own decoder differs on some inputs
 * (an encoded surrogate {@code ED A0 80} gives one U+FFFD there, three here), and decoded text must match the
 * reference exactly.
 */
final class LossyUtf8 {
    private LossyUtf8() {}

    static String decode(byte[] bytes, int offset, int length) {
        StringBuilder out = new StringBuilder(length);
        int i = offset;
        int end = offset + length;
        while (i < end) {
            int lead = bytes[i] & 0xFF;
            if (lead < 0x80) {
                out.append((char) lead);
                i++;
                continue;
            }
            int continuations;
            int secondMin = 0x80;
            int secondMax = 0xBF;
            if (lead >= 0xC2 && lead <= 0xDF) {
                continuations = 1;
            } else if (lead >= 0xE0 && lead <= 0xEF) {
                continuations = 2;
                secondMin = lead == 0xE0 ? 0xA0 : 0x80;
                secondMax = lead == 0xED ? 0x9F : 0xBF;
            } else if (lead >= 0xF0 && lead <= 0xF4) {
                continuations = 3;
                secondMin = lead == 0xF0 ? 0x90 : 0x80;
                secondMax = lead == 0xF4 ? 0x8F : 0xBF;
            } else {
                out.append('\uFFFD');
                i++;
                continue;
            }
            int codePoint = lead & (0x3F >> continuations);
            int j = i + 1;
            int read = 0;
            while (read < continuations && j < end) {
                int b = bytes[j] & 0xFF;
                int min = read == 0 ? secondMin : 0x80;
                int max = read == 0 ? secondMax : 0xBF;
                if (b < min || b > max) {
                    break;
                }
                codePoint = (codePoint << 6) | (b & 0x3F);
                read++;
                j++;
            }
            if (read == continuations) {
                out.appendCodePoint(codePoint);
            } else {
                out.append('\uFFFD');
            }
            i = j;
        }
        return out.toString();
    }
}
