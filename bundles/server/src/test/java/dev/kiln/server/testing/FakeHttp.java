package dev.kiln.server.testing;

import jakarta.servlet.FilterChain;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.reflect.Proxy;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** Minimal servlet request, response and filter chain for testing filters without a container. */
public final class FakeHttp {
    private FakeHttp() {}

    /** A request with a method and headers (names case-insensitive). */
    public static HttpServletRequest request(String method, Map<String, String> headers) {
        Map<String, String> h = new TreeMap<>(String.CASE_INSENSITIVE_ORDER);
        h.putAll(headers);
        return (HttpServletRequest) Proxy.newProxyInstance(FakeHttp.class.getClassLoader(),
                new Class<?>[] {HttpServletRequest.class}, (proxy, m, args) -> switch (m.getName()) {
                    case "getMethod" -> method;
                    case "getHeader" -> h.get((String) args[0]);
                    case "toString" -> method + " request";
                    default -> throw new UnsupportedOperationException(m.getName());
                });
    }

    /** What a filter or servlet wrote. */
    public static final class Response {
        public int status = 200;
        public final Map<String, List<String>> headers = new TreeMap<>(String.CASE_INSENSITIVE_ORDER);
        public final StringWriter body = new StringWriter();
        public String contentType;
        public final HttpServletResponse proxy;

        public Response() {
            PrintWriter writer = new PrintWriter(body);
            proxy = (HttpServletResponse) Proxy.newProxyInstance(FakeHttp.class.getClassLoader(),
                    new Class<?>[] {HttpServletResponse.class}, (p, m, args) -> {
                        switch (m.getName()) {
                            case "setStatus" -> status = (Integer) args[0];
                            case "setHeader" -> headers.put((String) args[0], new java.util.ArrayList<>(List.of((String) args[1])));
                            case "addHeader" -> headers.computeIfAbsent((String) args[0], k -> new java.util.ArrayList<>()).add((String) args[1]);
                            case "setContentType" -> contentType = (String) args[0];
                            case "setCharacterEncoding" -> { }
                            case "getWriter" -> { return writer; }
                            case "toString" -> { return "response"; }
                            default -> throw new UnsupportedOperationException(m.getName());
                        }
                        return null;
                    });
        }

        public String header(String name) {
            List<String> v = headers.get(name);
            return v == null ? null : String.join(", ", v);
        }
    }

    /** A chain that records whether the request was passed on. */
    public static final class Chain implements FilterChain {
        public int calls;

        @Override
        public void doFilter(jakarta.servlet.ServletRequest request, jakarta.servlet.ServletResponse response) {
            calls++;
        }
    }

    public static Map<String, String> headers(String... nameValue) {
        Map<String, String> m = new LinkedHashMap<>();
        for (int i = 0; i < nameValue.length; i += 2) m.put(nameValue[i], nameValue[i + 1]);
        return m;
    }
}
