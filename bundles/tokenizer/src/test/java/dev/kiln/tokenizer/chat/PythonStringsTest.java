package dev.kiln.tokenizer.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Python's string methods and {@code json.dumps}, with the answers CPython gives. */
class PythonStringsTest {
    @Test
    void splitFollowsPython() {
        assertEquals(List.of("a", "b", "c"), PythonStrings.split("  a b\t\nc  ", null, -1));
        assertEquals(List.of("a", "b c  "), PythonStrings.split("  a b c  ", null, 1));
        assertEquals(List.of("", "a", "", "b", ""), PythonStrings.split(",a,,b,", ",", -1));
        assertEquals(List.of("a", "b,c"), PythonStrings.split("a,b,c", ",", 1));
        assertEquals(List.of("a,b", "c"), PythonStrings.rsplit("a,b,c", ",", 1));
        assertEquals(List.of("  a b", "c"), PythonStrings.rsplit("  a b c  ", null, 1));
        assertEquals(List.of(), PythonStrings.split("   ", null, -1));
        assertEquals(List.of("x", "y", ""), PythonStrings.split("x.y.", ".", -1));
        assertThrows(IllegalArgumentException.class, () -> PythonStrings.split("x", "", -1));
    }

    @Test
    void stripTakesACharacterSet() {
        assertEquals("x", PythonStrings.strip("\u00a0 x\u3000\n", null, true, true));
        assertEquals("x\n\n", PythonStrings.strip("\n\nx\n\n", "\n", true, false));
        assertEquals("bcb", PythonStrings.strip("abcba", "ac", true, true));
    }

    @Test
    void caseAndReplace() {
        assertEquals("Hello World'S Ab1C", PythonStrings.title("hello wORLD's ab1c"));
        assertEquals("Hello world", PythonStrings.capitalize("hELLO WORLD"));
        assertEquals("x-y z", PythonStrings.replace("x y z", " ", "-", 1));
        assertEquals(2, PythonStrings.count("aaaa", "aa"));
        assertEquals(List.of("a", "b", "", "c"), PythonStrings.splitLines("a\r\nb\n\nc\n"));
    }

    @Test
    void indexesByCodePointFromEitherEnd() {
        assertEquals("\uD83D\uDE00", PythonStrings.charAt("a\uD83D\uDE00", -1));
        assertEquals("a", PythonStrings.charAt("a\uD83D\uDE00", -2));
        assertThrows(IndexOutOfBoundsException.class, () -> PythonStrings.charAt("ab", 2));
    }

    @Test
    void jsonDumpsAsPythonDoes() {
        Map<String, Object> value = new java.util.LinkedHashMap<>();
        value.put("name", "caf\u00e9 \"x\"\n");
        value.put("n", List.of(1L, 2.0, 1e-7, 1e20, 0.1, -0.0, true));
        value.put("none", null);
        value.put("empty", Map.of());
        assertEquals("{\"name\": \"caf\u00e9 \\\"x\\\"\\n\", \"n\": [1, 2.0, 1e-07, 1e+20, 0.1, -0.0, true], "
                + "\"none\": null, \"empty\": {}}", PythonJson.dumps(value, null, false));
        assertEquals("{\n  \"a\": [\n    1\n  ],\n  \"b\": \"\\u0001\"\n}",
                PythonJson.dumps(Map.of("b", "\u0001", "a", List.of(1)), 2, true));
        assertEquals("123456789.0", PythonJson.pythonFloat(123456789.0));
        assertEquals("1.5e+16", PythonJson.pythonFloat(1.5e16));
        assertEquals("0.0001", PythonJson.pythonFloat(1e-4));
        assertEquals("-2.5e-05", PythonJson.pythonFloat(-2.5e-5));
    }
}
