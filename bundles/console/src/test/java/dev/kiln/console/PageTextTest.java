package dev.kiln.console;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

class PageTextTest {
    @Test
    void markupInValuesIsEscaped() {
        assertEquals("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;",
                Html.escape("<script>alert('x')</script> & \"q\""));
    }

    @Test
    void quantitiesAreShortAndInBinaryOrDecimalUnits() {
        assertEquals("512 B", Units.bytes(512));
        assertEquals("1.50 KiB", Units.bytes(1536));
        assertEquals("3.31 GiB", Units.bytes(3_554_000_000L));
        assertEquals("999", Units.count(999));
        assertEquals("1.78 B", Units.count(1_777_088_000L));
        assertEquals("179 K", Units.count(179_264));
        assertEquals("12.5 %", Units.percent(0.125));
        assertEquals("–", Units.percent(Double.NaN));
    }
}
