package dev.kiln.server.security;

import static dev.kiln.server.testing.FakeHttp.headers;
import static dev.kiln.server.testing.FakeHttp.request;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import dev.kiln.server.testing.FakeHttp;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class CorsFilterTest {
    private static FakeHttp.Response call(CorsFilter filter, String method, Map<String, String> headers, FakeHttp.Chain chain) throws Exception {
        FakeHttp.Response response = new FakeHttp.Response();
        filter.doFilter(request(method, headers), response.proxy, chain);
        return response;
    }

    @Test
    void offByDefaultNoCorsHeaderIsSent() throws Exception {
        CorsFilter filter = new CorsFilter();
        filter.configure(List.of());
        FakeHttp.Chain chain = new FakeHttp.Chain();
        FakeHttp.Response r = call(filter, "POST", headers("Origin", "https://evil.example"), chain);
        assertNull(r.header("Access-Control-Allow-Origin"));
        assertEquals(1, chain.calls);
    }

    @Test
    void anAllowedOriginGetsPreflightAndResponseHeaders() throws Exception {
        CorsFilter filter = new CorsFilter();
        filter.configure(List.of("https://app.example/"));
        FakeHttp.Chain chain = new FakeHttp.Chain();
        FakeHttp.Response preflight = call(filter, "OPTIONS", headers("Origin", "https://app.example",
                "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type"), chain);
        assertEquals(204, preflight.status);
        assertEquals("https://app.example", preflight.header("Access-Control-Allow-Origin"));
        assertEquals("authorization, content-type", preflight.header("Access-Control-Allow-Headers"));
        assertEquals(0, chain.calls, "a preflight is answered without reaching the API (or its key check)");

        FakeHttp.Response actual = call(filter, "POST", headers("Origin", "https://app.example"), chain);
        assertEquals("https://app.example", actual.header("Access-Control-Allow-Origin"));
        assertEquals(1, chain.calls);
    }

    @Test
    void otherOriginsAreRefusedAtPreflightAndGetNoHeaders() throws Exception {
        CorsFilter filter = new CorsFilter();
        filter.configure(List.of("https://app.example"));
        FakeHttp.Chain chain = new FakeHttp.Chain();
        FakeHttp.Response preflight = call(filter, "OPTIONS", headers("Origin", "https://evil.example",
                "Access-Control-Request-Method", "POST"), chain);
        assertEquals(403, preflight.status);
        FakeHttp.Response actual = call(filter, "POST", headers("Origin", "https://evil.example"), chain);
        assertNull(actual.header("Access-Control-Allow-Origin"));
    }

    @Test
    void aWildcardAllowsAnyOrigin() throws Exception {
        CorsFilter filter = new CorsFilter();
        filter.configure(List.of("*"));
        FakeHttp.Response r = call(filter, "GET", headers("Origin", "http://localhost:3000"), new FakeHttp.Chain());
        assertEquals("*", r.header("Access-Control-Allow-Origin"));
    }
}
