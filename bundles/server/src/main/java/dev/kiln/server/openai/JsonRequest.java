package dev.kiln.server.openai;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import java.util.ArrayList;
import java.util.List;

/**
 * Typed, validated access to a request body's fields. Every wrong type or out-of-range value becomes a 400 naming
 * the parameter; a JSON null counts as absent, as in OpenAI's API.
 */
final class JsonRequest {
    private final JsonObject body;

    JsonRequest(JsonObject body) {
        this.body = body;
    }

    boolean has(String name) {
        return body.has(name) && !body.get(name).isJsonNull();
    }

    JsonElement raw(String name) {
        return has(name) ? body.get(name) : null;
    }

    String string(String name, String fallback) {
        if (!has(name)) return fallback;
        JsonElement e = body.get(name);
        if (e instanceof JsonPrimitive p && p.isString()) return p.getAsString();
        throw ApiException.invalid(name, "'" + name + "' must be a string");
    }

    String requiredString(String name) {
        String s = string(name, null);
        if (s == null) throw ApiException.invalid(name, "'" + name + "' is required");
        return s;
    }

    boolean bool(String name, boolean fallback) {
        if (!has(name)) return fallback;
        JsonElement e = body.get(name);
        if (e instanceof JsonPrimitive p && p.isBoolean()) return p.getAsBoolean();
        throw ApiException.invalid(name, "'" + name + "' must be a boolean");
    }

    double number(String name, double fallback, double min, double max) {
        if (!has(name)) return fallback;
        JsonElement e = body.get(name);
        if (!(e instanceof JsonPrimitive p && p.isNumber())) throw ApiException.invalid(name, "'" + name + "' must be a number");
        double v = p.getAsDouble();
        if (!Double.isFinite(v) || v < min || v > max) {
            throw ApiException.invalid(name, "'" + name + "' must be between " + fmt(min) + " and " + fmt(max) + ", got " + p);
        }
        return v;
    }

    /** An integer field; {@code null} when absent. */
    Integer integer(String name, long min, long max) {
        if (!has(name)) return null;
        JsonElement e = body.get(name);
        if (!(e instanceof JsonPrimitive p && p.isNumber())) throw ApiException.invalid(name, "'" + name + "' must be an integer");
        double d = p.getAsDouble();
        if (d != Math.rint(d)) throw ApiException.invalid(name, "'" + name + "' must be an integer, got " + p);
        if (d < min || d > max) throw ApiException.invalid(name, "'" + name + "' must be between " + min + " and " + max + ", got " + p);
        return (int) d;
    }

    int integer(String name, int fallback, long min, long max) {
        Integer v = integer(name, min, max);
        return v == null ? fallback : v;
    }

    Long longValue(String name) {
        if (!has(name)) return null;
        JsonElement e = body.get(name);
        if (!(e instanceof JsonPrimitive p && p.isNumber())) throw ApiException.invalid(name, "'" + name + "' must be an integer");
        try {
            return p.getAsBigDecimal().longValueExact();
        } catch (ArithmeticException ex) {
            throw ApiException.invalid(name, "'" + name + "' must be a 64-bit integer, got " + p);
        }
    }

    /** A string or a list of strings ({@code stop}); empty when absent. */
    List<String> strings(String name, int maxCount) {
        if (!has(name)) return List.of();
        JsonElement e = body.get(name);
        if (e instanceof JsonPrimitive p && p.isString()) return List.of(p.getAsString());
        if (e instanceof JsonArray a) {
            if (a.size() > maxCount) throw ApiException.invalid(name, "'" + name + "' takes at most " + maxCount + " entries");
            List<String> out = new ArrayList<>();
            for (JsonElement x : a) {
                if (!(x instanceof JsonPrimitive p && p.isString())) throw ApiException.invalid(name, "'" + name + "' must be a string or a list of strings");
                out.add(p.getAsString());
            }
            return out;
        }
        throw ApiException.invalid(name, "'" + name + "' must be a string or a list of strings");
    }

    /** A list of integers within bounds; empty when absent. */
    int[] ints(String name, int min, int max) {
        if (!has(name)) return new int[0];
        if (!(body.get(name) instanceof JsonArray a)) throw ApiException.invalid(name, "'" + name + "' must be a list of integers");
        return toInts(a, name, min, max);
    }

    static int[] toInts(JsonArray a, String name, int min, int max) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) {
            JsonElement x = a.get(i);
            if (!(x instanceof JsonPrimitive p && p.isNumber()) || p.getAsDouble() != Math.rint(p.getAsDouble())) {
                throw ApiException.invalid(name, "'" + name + "' must be a list of integers");
            }
            double d = p.getAsDouble();
            if (d < min || d > max) throw ApiException.invalid(name, "'" + name + "' holds " + p + ", outside " + min + ".." + max);
            out[i] = (int) d;
        }
        return out;
    }

    JsonObject object(String name) {
        if (!has(name)) return null;
        if (body.get(name) instanceof JsonObject o) return o;
        throw ApiException.invalid(name, "'" + name + "' must be an object");
    }

    private static String fmt(double d) {
        return d == Math.rint(d) && Math.abs(d) < 1e15 ? Long.toString((long) d) : Double.toString(d);
    }
}
