package dev.kiln.tokenizer.chat;

import java.beans.FeatureDescriptor;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import jinjava.javax.el.ELContext;
import jinjava.javax.el.ELResolver;

/**
 * Gives strings in templates Python's methods ({@code startswith}, {@code strip('\n')}, {@code split}, ...) and
 * Python's indexing ({@code s[-1]}): Jinja templates written for transformers call them on message contents, and
 * Jinjava would otherwise look for Java methods of those names. Placed before Jinjava's own resolvers.
 */
final class PythonMethodResolver extends ELResolver {
    @Override
    public Object getValue(ELContext context, Object base, Object property) {
        if (base instanceof String s) {
            Long index = integerIndex(property);
            if (index != null) {
                context.setPropertyResolved(true);
                return PythonStrings.charAt(s, index);
            }
        }
        return null;
    }

    /** An integer subscript; Jinjava hands integer subscripts over as their decimal text. */
    private static Long integerIndex(Object property) {
        if (property instanceof Long || property instanceof Integer || property instanceof Short) {
            return ((Number) property).longValue();
        }
        if (property instanceof String text && text.matches("-?\\d{1,18}")) {
            return Long.parseLong(text);
        }
        return null;
    }

    @Override
    public Object invoke(ELContext context, Object base, Object method, Class<?>[] paramTypes, Object[] params) {
        if (!(base instanceof String s) || method == null) {
            return null;
        }
        Object[] args = params == null ? new Object[0] : params;
        Object result = call(s, method.toString(), args);
        if (result != NOT_A_METHOD) {
            context.setPropertyResolved(true);
            return result;
        }
        return null;
    }

    private static final Object NOT_A_METHOD = new Object();

    private static Object call(String s, String name, Object[] args) {
        return switch (name) {
            case "startswith" -> args.length >= 1 ? affix(s, args[0], true) : NOT_A_METHOD;
            case "endswith" -> args.length >= 1 ? affix(s, args[0], false) : NOT_A_METHOD;
            case "strip" -> PythonStrings.strip(s, optionalString(args, 0), true, true);
            case "lstrip" -> PythonStrings.strip(s, optionalString(args, 0), true, false);
            case "rstrip" -> PythonStrings.strip(s, optionalString(args, 0), false, true);
            case "split" -> PythonStrings.split(s, optionalString(args, 0), optionalInt(args, 1, -1));
            case "rsplit" -> PythonStrings.rsplit(s, optionalString(args, 0), optionalInt(args, 1, -1));
            case "splitlines" -> PythonStrings.splitLines(s);
            case "upper" -> s.toUpperCase(Locale.ROOT);
            case "lower" -> s.toLowerCase(Locale.ROOT);
            case "title" -> PythonStrings.title(s);
            case "capitalize" -> PythonStrings.capitalize(s);
            case "replace" -> args.length >= 2
                    ? PythonStrings.replace(s, str(args[0]), str(args[1]), optionalInt(args, 2, -1)) : NOT_A_METHOD;
            case "find" -> args.length >= 1 ? (long) codePointIndex(s, s.indexOf(str(args[0]))) : NOT_A_METHOD;
            case "rfind" -> args.length >= 1 ? (long) codePointIndex(s, s.lastIndexOf(str(args[0]))) : NOT_A_METHOD;
            case "count" -> args.length >= 1 ? (long) PythonStrings.count(s, str(args[0])) : NOT_A_METHOD;
            case "join" -> args.length == 1 && args[0] instanceof Iterable<?> items ? join(s, items) : NOT_A_METHOD;
            case "isdigit" -> !s.isEmpty() && s.codePoints().allMatch(Character::isDigit);
            case "isalpha" -> !s.isEmpty() && s.codePoints().allMatch(Character::isLetter);
            case "isspace" -> !s.isEmpty() && s.codePoints().allMatch(PythonStrings::isSpace);
            case "isupper" -> s.codePoints().anyMatch(Character::isUpperCase)
                    && s.codePoints().noneMatch(Character::isLowerCase);
            case "islower" -> s.codePoints().anyMatch(Character::isLowerCase)
                    && s.codePoints().noneMatch(Character::isUpperCase);
            default -> NOT_A_METHOD;
        };
    }

    /** {@code startswith}/{@code endswith} accept one prefix or a tuple (list) of them. */
    private static boolean affix(String s, Object arg, boolean prefix) {
        if (arg instanceof Iterable<?> options) {
            for (Object option : options) {
                if (affix(s, option, prefix)) {
                    return true;
                }
            }
            return false;
        }
        String a = str(arg);
        return prefix ? s.startsWith(a) : s.endsWith(a);
    }

    private static String join(String separator, Iterable<?> items) {
        StringBuilder out = new StringBuilder();
        boolean first = true;
        for (Object item : items) {
            if (!first) {
                out.append(separator);
            }
            out.append(str(item));
            first = false;
        }
        return out.toString();
    }

    private static int codePointIndex(String s, int charIndex) {
        return charIndex < 0 ? -1 : s.codePointCount(0, charIndex);
    }

    private static String optionalString(Object[] args, int index) {
        return args.length > index && args[index] != null ? str(args[index]) : null;
    }

    private static int optionalInt(Object[] args, int index, int fallback) {
        return args.length > index && args[index] instanceof Number n ? n.intValue() : fallback;
    }

    private static String str(Object value) {
        return value == null ? "None" : value.toString();
    }

    @Override
    public Class<?> getType(ELContext context, Object base, Object property) {
        return null;
    }

    @Override
    public void setValue(ELContext context, Object base, Object property, Object value) {
        // Strings are immutable; other bases are left to the next resolver.
    }

    @Override
    public boolean isReadOnly(ELContext context, Object base, Object property) {
        return true;
    }

    @Override
    public Iterator<FeatureDescriptor> getFeatureDescriptors(ELContext context, Object base) {
        return null;
    }

    @Override
    public Class<?> getCommonPropertyType(ELContext context, Object base) {
        return base instanceof String ? Number.class : null;
    }
}
