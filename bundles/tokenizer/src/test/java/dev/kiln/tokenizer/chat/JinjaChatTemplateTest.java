package dev.kiln.tokenizer.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonParser;
import dev.kiln.api.tokenizer.ChatMessage;
import java.time.ZoneId;
import java.time.ZonedDateTime;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

/** Template behaviour beyond the reference renderings: errors, functions, variables, threads. */
class JinjaChatTemplateTest {
    private static String render(String template, Map<String, Object> variables, ChatMessage... messages) {
        return new JinjaChatTemplate(template, Map.of("bos_token", "<s>")).render(List.of(messages), true, variables);
    }

    @Test
    void raiseExceptionRejectsTheConversation() {
        String template = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with user') }}"
                + "{% endif %}ok";
        assertEquals("ok", render(template, Map.of(), new ChatMessage("user", "x")));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> render(template, Map.of(), new ChatMessage("assistant", "x")));
        assertEquals("Conversation must start with user", e.getMessage());
    }

    @Test
    void brokenTemplatesFailLoudly() {
        assertThrows(IllegalStateException.class, () -> render("{{ 'x'.nosuchmethod() }}", Map.of()));
    }

    @Test
    void variablesAndSpecialTokensReachTheTemplate() {
        String template = "{{ bos_token }}{% if enable_thinking is defined and enable_thinking is false %}no-think"
                + "{% endif %}{{ add_generation_prompt }}|{{ messages|length }}";
        assertEquals("<s>no-thinktrue|1", render(template, Map.of("enable_thinking", false), new ChatMessage("user", "x")));
        assertEquals("<t>true|0", render("{{ bos_token }}{{ add_generation_prompt }}|{{ messages|length }}",
                Map.of("bos_token", "<t>")));
    }

    @Test
    void extraMessageFieldsArriveAsPlainValues() {
        ChatMessage call = new ChatMessage("assistant", null, Map.of("tool_calls",
                JsonParser.parseString("[{\"function\": {\"name\": \"f\", \"arguments\": {\"n\": 2, \"x\": 0.5}}}]")));
        String template = "{% for m in messages %}{% if m.content is none %}none:{% endif %}"
                + "{% for c in m.tool_calls %}{{ c.function.name }}{{ c.function.arguments|tojson }}{% endfor %}"
                + "{% endfor %}";
        assertEquals("none:f{\"n\": 2, \"x\": 0.5}", render(template, Map.of(), call));
    }

    @Test
    void generationBlocksRenderTheirContent() {
        assertEquals("<a>x</a>", render("<a>{% generation %}{{ messages[0].content }}{% endgeneration %}</a>",
                Map.of(), new ChatMessage("assistant", "x")));
    }

    @Test
    void loopControlsAndTrimmedBlocks() {
        String template = "{% for m in messages %}\n  {% if loop.index0 == 1 %}{% continue %}{% endif %}\n"
                + "  {{ m.content }}\n{% endfor %}\n";
        assertEquals("  a\n  c\n", render(template, Map.of(), new ChatMessage("user", "a"), new ChatMessage("user", "b"),
                new ChatMessage("user", "c")));
    }

    @Test
    void strftimeFormatsTheCurrentDate() {
        ZonedDateTime t = ZonedDateTime.of(2026, 3, 5, 14, 7, 9, 0, ZoneId.of("UTC"));
        assertEquals("05 Mar 2026, 2:07 PM Thursday", TemplateFunctions.strftime(t, "%d %b %Y, %-I:%M %p %A"));
        String today = render("{{ strftime_now('%Y') }}", Map.of());
        assertEquals(String.valueOf(java.time.Year.now().getValue()), today);
    }

    @Test
    void rendersConcurrently() throws Exception {
        JinjaChatTemplate template = new JinjaChatTemplate(
                "{% for m in messages %}{{ m.role }}:{{ m.content.strip() }};{% endfor %}", Map.of());
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
            List<Future<Boolean>> results = new java.util.ArrayList<>();
            for (int i = 0; i < 64; i++) {
                String content = " message " + i + " ";
                results.add(pool.submit(() -> template.render(List.of(new ChatMessage("user", content)), false, Map.of())
                        .equals("user:" + content.strip() + ";")));
            }
            for (Future<Boolean> result : results) {
                assertTrue(result.get());
            }
        } finally {
            pool.shutdownNow();
        }
    }
}
