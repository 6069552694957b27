package dev.kiln.server.security;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import org.osgi.framework.BundleContext;

/**
 * Reads a list setting from Config Admin properties (a string, an array or a collection; a string may list values
 * separated by commas) and falls back to a framework property, which is how {@code kiln serve} options arrive.
 */
final class Settings {
    private Settings() {}

    static List<String> list(Map<String, Object> properties, String key, BundleContext context, String frameworkProperty) {
        Object value = properties.get(key);
        if (value == null && context != null) value = context.getProperty(frameworkProperty);
        return split(value);
    }

    static List<String> split(Object value) {
        List<String> out = new ArrayList<>();
        if (value == null) return out;
        if (value instanceof String[] array) {
            for (String s : array) out.addAll(split(s));
        } else if (value instanceof Collection<?> c) {
            for (Object o : c) out.addAll(split(o));
        } else {
            for (String part : String.valueOf(value).split(",")) {
                if (!part.isBlank()) out.add(part.strip());
            }
        }
        return out;
    }

    static String string(Map<String, Object> properties, String key, BundleContext context, String frameworkProperty) {
        Object value = properties.get(key);
        if (value == null && context != null) value = context.getProperty(frameworkProperty);
        return value == null || String.valueOf(value).isBlank() ? null : String.valueOf(value).strip();
    }
}
