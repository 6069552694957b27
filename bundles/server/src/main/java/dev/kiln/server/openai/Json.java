package dev.kiln.server.openai;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Conversions from Gson's tree to plain Java values (for template variables and message extras). */
final class Json {
    private Json() {}

    static Object toJava(JsonElement e) {
        if (e == null || e.isJsonNull()) return null;
        if (e instanceof JsonPrimitive p) {
            if (p.isBoolean()) return p.getAsBoolean();
            if (p.isNumber()) {
                double d = p.getAsDouble();
                return d == Math.rint(d) && Math.abs(d) < 1e15 ? (Object) (long) d : (Object) d;
            }
            return p.getAsString();
        }
        if (e instanceof JsonArray a) {
            List<Object> out = new ArrayList<>();
            for (JsonElement x : a) out.add(toJava(x));
            return out;
        }
        Map<String, Object> out = new LinkedHashMap<>();
        for (var entry : ((JsonObject) e).entrySet()) out.put(entry.getKey(), toJava(entry.getValue()));
        return out;
    }
}
