package dev.kiln.tokenizer.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** The rewrites that give Jinja2 constructs their Jinja2 meaning under Jinjava. */
class Jinja2SourceTest {
    @Test
    void parenthesizesKeywordArgumentValues() {
        assertEquals("{% set ns = namespace(a=(x|length - 1), b=(f(c=(2 + 1)))) %}",
                Jinja2Source.toJinjava("{% set ns = namespace(a=x|length - 1, b=f(c=2 + 1)) %}"));
    }

    @Test
    void leavesComparisonsAssignmentsAndStringsAlone() {
        String source = "{% set x = 1 %}{{ f(a == b, c != 'd=e', g <= h) }}{{ 'k=v' }}";
        assertEquals(source, Jinja2Source.toJinjava(source));
    }

    @Test
    void reversesStepSlices() {
        assertEquals("{% for m in messages|reverse %}", Jinja2Source.toJinjava("{% for m in messages[::-1] %}"));
    }

    @Test
    void dropsOneTrailingNewlineAndNormalizesLineEnds() {
        assertEquals("a\nb\n", Jinja2Source.toJinjava("a\r\nb\r\n\r\n"));
    }

    @Test
    void leavesTextCommentsAndRawBlocksAlone() {
        String source = "f(a=1 - 2) {# g(b=1 - 2) #}{% raw %}{{ h(c=1 - 2) }}{% endraw %}";
        assertEquals(source, Jinja2Source.toJinjava(source));
    }
}
