package dev.kiln.server.prometheus;

import dev.kiln.server.metrics.HistogramSnapshot;
import java.util.Map;

/**
 * Writes the Prometheus text exposition format 0.0.4: {@code # HELP} and {@code # TYPE} once per family, then its
 * samples. Counters are named with their {@code _total} suffix, histograms expand to {@code _bucket} (cumulative,
 * ending with {@code le="+Inf"}), {@code _sum} and {@code _count}.
 */
final class PrometheusText {
    /** The content type scrapers expect for this format. */
    static final String CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

    private final StringBuilder out = new StringBuilder(8192);

    /** A counter family {@code name} (which must end in {@code _total}) with one sample per label set. */
    PrometheusText counter(String name, String help, Map<Labels, ? extends Number> samples) {
        if (!name.endsWith("_total")) throw new IllegalArgumentException("a counter's name ends in _total: " + name);
        header(name.substring(0, name.length() - "_total".length()), help, "counter");
        samples.forEach((labels, value) -> sample(name, labels, value));
        return this;
    }

    PrometheusText counter(String name, String help, Labels labels, long value) {
        return counter(name, help, Map.of(labels, value));
    }

    PrometheusText gauge(String name, String help, Labels labels, double value) {
        header(name, help, "gauge");
        sample(name, labels, value);
        return this;
    }

    PrometheusText histogram(String name, String help, Labels labels, HistogramSnapshot h) {
        header(name, help, "histogram");
        double[] bounds = h.upperBounds();
        long[] cumulative = h.cumulativeCounts();
        for (int i = 0; i < bounds.length; i++) sample(name + "_bucket", labels.with("le", number(bounds[i])), cumulative[i]);
        sample(name + "_bucket", labels.with("le", "+Inf"), h.count());
        sample(name + "_sum", labels, h.sum());
        sample(name + "_count", labels, h.count());
        return this;
    }

    @Override
    public String toString() {
        return out.toString();
    }

    private void header(String family, String help, String type) {
        out.append("# HELP ").append(family).append(' ').append(help.replace("\\", "\\\\").replace("\n", "\\n")).append('\n');
        out.append("# TYPE ").append(family).append(' ').append(type).append('\n');
    }

    private void sample(String name, Labels labels, Number value) {
        out.append(name);
        labels.appendTo(out);
        out.append(' ').append(value instanceof Double || value instanceof Float ? number(value.doubleValue()) : value.toString());
        out.append('\n');
    }

    /** Prometheus' spelling of a float: Go's {@code +Inf}, {@code -Inf}, {@code NaN}; integral values without ".0". */
    static String number(double v) {
        if (Double.isNaN(v)) return "NaN";
        if (Double.isInfinite(v)) return v > 0 ? "+Inf" : "-Inf";
        if (v == Math.rint(v) && Math.abs(v) < 1e15) return Long.toString((long) v);
        return Double.toString(v);
    }

    /** An ordered label set, escaped when written. */
    record Labels(String[] pairs) {
        static final Labels NONE = new Labels(new String[0]);

        static Labels of(String... nameValuePairs) {
            if (nameValuePairs.length % 2 != 0) throw new IllegalArgumentException("labels come in name/value pairs");
            return new Labels(nameValuePairs.clone());
        }

        Labels with(String name, String value) {
            String[] more = java.util.Arrays.copyOf(pairs, pairs.length + 2);
            more[pairs.length] = name;
            more[pairs.length + 1] = value;
            return new Labels(more);
        }

        void appendTo(StringBuilder out) {
            if (pairs.length == 0) return;
            out.append('{');
            for (int i = 0; i < pairs.length; i += 2) {
                if (i > 0) out.append(',');
                out.append(pairs[i]).append("=\"");
                String v = pairs[i + 1];
                for (int c = 0; c < v.length(); c++) {
                    char ch = v.charAt(c);
                    switch (ch) {
                        case '\\' -> out.append("\\\\");
                        case '"' -> out.append("\\\"");
                        case '\n' -> out.append("\\n");
                        default -> out.append(ch);
                    }
                }
                out.append('"');
            }
            out.append('}');
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Labels l && java.util.Arrays.equals(pairs, l.pairs);
        }

        @Override
        public int hashCode() {
            return java.util.Arrays.hashCode(pairs);
        }
    }
}
