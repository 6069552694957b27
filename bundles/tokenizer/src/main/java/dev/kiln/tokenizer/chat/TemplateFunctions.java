package dev.kiln.tokenizer.chat;

import java.time.ZonedDateTime;
import java.time.format.TextStyle;
import java.util.Locale;

/** The global functions transformers gives chat templates. Public static methods, as Jinjava calls them. */
public final class TemplateFunctions {
    private TemplateFunctions() {}

    /** Thrown by {@code raise_exception}: the template rejects the conversation. */
    static final class TemplateRejection extends RuntimeException {
        TemplateRejection(String message) {
            super(message, null, false, false);
        }
    }

    /** {@code raise_exception(message)}. */
    public static Object raiseException(String message) {
        throw new TemplateRejection(message);
    }

    /** {@code strftime_now(format)}: the current local time in Python's {@code strftime} format. */
    public static String strftimeNow(String format) {
        return strftime(ZonedDateTime.now(), format);
    }

    /** Python's {@code strftime} for the directives templates use (C locale names). */
    static String strftime(ZonedDateTime t, String format) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < format.length(); i++) {
            char c = format.charAt(i);
            if (c != '%' || i + 1 == format.length()) {
                out.append(c);
                continue;
            }
            char d = format.charAt(++i);
            boolean noPad = false;
            if (d == '-' && i + 1 < format.length()) {
                noPad = true;
                d = format.charAt(++i);
            }
            switch (d) {
                case 'Y' -> out.append(t.getYear());
                case 'y' -> out.append(pad(t.getYear() % 100, noPad));
                case 'm' -> out.append(pad(t.getMonthValue(), noPad));
                case 'd' -> out.append(pad(t.getDayOfMonth(), noPad));
                case 'e' -> out.append(String.format("%2d", t.getDayOfMonth()));
                case 'j' -> out.append(noPad ? String.valueOf(t.getDayOfYear()) : String.format("%03d", t.getDayOfYear()));
                case 'H' -> out.append(pad(t.getHour(), noPad));
                case 'I' -> out.append(pad(t.getHour() % 12 == 0 ? 12 : t.getHour() % 12, noPad));
                case 'M' -> out.append(pad(t.getMinute(), noPad));
                case 'S' -> out.append(pad(t.getSecond(), noPad));
                case 'p' -> out.append(t.getHour() < 12 ? "AM" : "PM");
                case 'b', 'h' -> out.append(t.getMonth().getDisplayName(TextStyle.SHORT, Locale.US));
                case 'B' -> out.append(t.getMonth().getDisplayName(TextStyle.FULL, Locale.US));
                case 'a' -> out.append(t.getDayOfWeek().getDisplayName(TextStyle.SHORT, Locale.US));
                case 'A' -> out.append(t.getDayOfWeek().getDisplayName(TextStyle.FULL, Locale.US));
                case 'Z' -> out.append(t.getZone().getDisplayName(TextStyle.SHORT, Locale.US));
                case '%' -> out.append('%');
                default -> out.append('%').append(noPad ? "-" : "").append(d);
            }
        }
        return out.toString();
    }

    private static String pad(int value, boolean noPad) {
        return noPad || value >= 10 ? String.valueOf(value) : "0" + value;
    }
}
