package dev.kiln.tokenizer.chat;

import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.lib.filter.Filter;
import java.util.Map;

/** The {@code tojson} filter as transformers defines it ({@code indent} and {@code sort_keys} honoured). */
final class PythonJsonFilter implements Filter {
    @Override
    public String getName() {
        return "tojson";
    }

    @Override
    public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
        return PythonJson.dumps(var, args.length > 0 && args[0] != null ? Integer.valueOf(args[0]) : null, false);
    }

    @Override
    public Object filter(Object var, JinjavaInterpreter interpreter, Object[] args, Map<String, Object> kwargs) {
        Object indent = kwargs.containsKey("indent") ? kwargs.get("indent") : args.length > 0 ? args[0] : null;
        Object sortKeys = kwargs.get("sort_keys");
        return PythonJson.dumps(var, indent instanceof Number n ? Integer.valueOf(n.intValue()) : null,
                Boolean.TRUE.equals(sortKeys));
    }
}
