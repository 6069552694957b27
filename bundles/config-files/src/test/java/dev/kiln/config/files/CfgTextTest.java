package dev.kiln.config.files;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.StringReader;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class CfgTextTest {
    private static final String OPERATOR_FILE = """
            # Engine settings for the staging host.
            # max-num-seqs bounds the running batch.
            max-num-seqs = 8
            ! a comment in the other style
            backend: cpu

            quantization=weight_only_int8
            """;

    @Test
    void aFileThatAlreadyHoldsTheValuesIsNotRewritten() {
        Map<String, String> same = Map.of("max-num-seqs", "8", "backend", "cpu", "quantization", "weight_only_int8");
        assertNull(CfgText.withValues(OPERATOR_FILE, same));
    }

    @Test
    void aChangedValueIsRewrittenInPlaceAfterTheKeyAsWritten() {
        Map<String, String> wanted = Map.of("max-num-seqs", "1", "backend", "cuda", "quantization", "weight_only_int8");
        assertEquals("""
                # Engine settings for the staging host.
                # max-num-seqs bounds the running batch.
                max-num-seqs = 1
                ! a comment in the other style
                backend: cuda

                quantization=weight_only_int8
                """, CfgText.withValues(OPERATOR_FILE, wanted));
    }

    @Test
    void aRemovedKeyLosesItsLinesAndANewKeyIsAppendedInNameOrder() {
        Map<String, String> wanted = new HashMap<>(Map.of("max-num-seqs", "8", "quantization", "weight_only_int8"));
        wanted.put("speculative", "reference");
        wanted.put("attention", "paged");
        assertEquals("""
                # Engine settings for the staging host.
                # max-num-seqs bounds the running batch.
                max-num-seqs = 8
                ! a comment in the other style

                quantization=weight_only_int8
                attention=paged
                speculative=reference
                """, CfgText.withValues(OPERATOR_FILE, wanted));
    }

    @Test
    void continuationLinesRepeatedKeysLineEndingsAndAMissingFinalNewlineAreKept() {
        String text = "a=1\r\nlong = one,\\\r\n   two\r\na=2\r\n# last\r\nb=3";
        assertEquals(Map.of("a", "2", "long", "one,two", "b", "3"), CfgText.values(text));
        // The last 'a' counts and is the one rewritten; the continued value is replaced as a whole.
        assertEquals("a=1\r\nlong = three\r\na=5\r\n# last\r\nb=3\r\nc=4\r\n",
                CfgText.withValues(text, Map.of("a", "5", "long", "three", "b", "3", "c", "4")));
        assertEquals("# last\r\nb=3", CfgText.withValues(text, Map.of("b", "3")));
    }

    @Test
    void escapedKeysAndValuesReadBackAsWritten() throws IOException {
        Map<String, String> wanted = new LinkedHashMap<>();
        wanted.put("key with spaces", "  leading blanks kept");
        wanted.put("a=b:c#d!e", "x=y:z # not a comment");
        wanted.put("path", "C:\\models\\qwen\\");
        wanted.put("name", "Grüße, 模型");
        wanted.put("multi", "line one\nline two\ttab");
        wanted.put("", "empty key");
        String text = CfgText.withValues("", wanted);
        assertEquals(wanted, load(text));
        assertEquals(wanted, CfgText.values(text));
        assertNull(CfgText.withValues(text, wanted));
        assertTrue(text.chars().allMatch(c -> c < 0x7f), "written as ASCII, readable in any encoding: " + text);
    }

    /** Any text of keys, comments and continuations, brought to any values: java.util.Properties reads exactly them. */
    @Test
    void randomFilesBroughtToRandomValuesReadBackExactlyAndSettle() throws IOException {
        SplittableRandom random = new SplittableRandom(7);
        String[] pieces = {"a", "b", "key", " ", "=", ":", "\\", "#", "!", "\t", "é", "x y", "\\\n", "1", "\\u0041"};
        for (int round = 0; round < 5000; round++) {
            StringBuilder text = new StringBuilder();
            int lines = random.nextInt(6);
            for (int l = 0; l < lines; l++) {
                int n = random.nextInt(1, 6);
                for (int p = 0; p < n; p++) text.append(pieces[random.nextInt(pieces.length)]);
                text.append(random.nextInt(4) == 0 ? "\r\n" : "\n");
            }
            Map<String, String> wanted = new HashMap<>();
            Map<String, String> before = CfgText.values(text.toString());
            for (String key : before.keySet()) if (random.nextBoolean()) wanted.put(key, random.nextBoolean() ? before.get(key) : "v" + round);
            for (int k = random.nextInt(3); k > 0; k--) wanted.put(pieces[random.nextInt(pieces.length)] + k, pieces[random.nextInt(pieces.length)]);
            String changed = CfgText.withValues(text.toString(), wanted);
            String result = changed == null ? text.toString() : changed;
            assertEquals(wanted, CfgText.values(result), () -> "from " + text);
            assertEquals(wanted, load(result), () -> "from " + text + " to " + result);
            assertNull(CfgText.withValues(result, wanted), () -> "not settled: " + result);
        }
    }

    private static Map<String, String> load(String text) throws IOException {
        Properties p = new Properties();
        p.load(new StringReader(text));
        Map<String, String> m = new HashMap<>();
        p.stringPropertyNames().forEach(k -> m.put(k, p.getProperty(k)));
        return m;
    }
}
