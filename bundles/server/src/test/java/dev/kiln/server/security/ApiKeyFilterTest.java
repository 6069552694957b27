package dev.kiln.server.security;

import static dev.kiln.server.testing.FakeHttp.headers;
import static dev.kiln.server.testing.FakeHttp.request;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.kiln.server.testing.FakeHttp;
import java.lang.reflect.Proxy;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.osgi.framework.BundleContext;

class ApiKeyFilterTest {
    private static BundleContext context(Map<String, String> frameworkProperties) {
        return (BundleContext) Proxy.newProxyInstance(ApiKeyFilterTest.class.getClassLoader(),
                new Class<?>[] {BundleContext.class}, (p, m, args) -> {
                    if (m.getName().equals("getProperty")) return frameworkProperties.get((String) args[0]);
                    throw new UnsupportedOperationException(m.getName());
                });
    }

    private static FakeHttp.Response call(ApiKeyFilter filter, Map<String, String> headers, FakeHttp.Chain chain) throws Exception {
        FakeHttp.Response response = new FakeHttp.Response();
        filter.doFilter(request("POST", headers), response.proxy, chain);
        return response;
    }

    private static JsonObject error(FakeHttp.Response r) {
        return JsonParser.parseString(r.body.toString()).getAsJsonObject().getAsJsonObject("error");
    }

    @Test
    void withKeysOnlyAMatchingBearerTokenPasses() throws Exception {
        ApiKeyFilter filter = new ApiKeyFilter();
        filter.activate(context(Map.of()), Map.of("api-key", new String[] {"sk-one", ApiKeys.digestSpec("sk-two")}));
        FakeHttp.Chain chain = new FakeHttp.Chain();

        FakeHttp.Response missing = call(filter, headers(), chain);
        assertEquals(401, missing.status);
        assertEquals("missing_api_key", error(missing).get("code").getAsString());
        assertEquals("invalid_request_error", error(missing).get("type").getAsString());
        assertTrue(error(missing).get("param").isJsonNull());
        assertEquals("Bearer", missing.header("WWW-Authenticate"));

        FakeHttp.Response wrong = call(filter, headers("Authorization", "Bearer sk-three"), chain);
        assertEquals(401, wrong.status);
        assertEquals("invalid_api_key", error(wrong).get("code").getAsString());
        assertFalse(wrong.body.toString().contains("sk-three"), "the presented key is never echoed");
        assertEquals(0, chain.calls);

        assertEquals(200, call(filter, headers("Authorization", "Bearer sk-one"), chain).status);
        assertEquals(200, call(filter, headers("Authorization", "Bearer sk-two"), chain).status);
        assertEquals(2, chain.calls);
    }

    @Test
    void theLaunchersDigestsAndConfiguredKeysAreAllAccepted() throws Exception {
        ApiKeyFilter filter = new ApiKeyFilter();
        filter.activate(context(Map.of(ApiKeyFilter.KEYS_PROPERTY, ApiKeys.digestSpec("a") + "," + ApiKeys.digestSpec("b"))),
                Map.of("api-key", "c"));
        FakeHttp.Chain chain = new FakeHttp.Chain();
        assertEquals(401, call(filter, headers("Authorization", "Bearer d"), chain).status);
        assertEquals(200, call(filter, headers("Authorization", "Bearer b"), chain).status);
        assertEquals(200, call(filter, headers("Authorization", "Bearer c"), chain).status);
        assertEquals(2, chain.calls);
    }

    @Test
    void withoutKeysTheApiIsOpen() throws Exception {
        ApiKeyFilter filter = new ApiKeyFilter();
        filter.activate(context(Map.of()), Map.of());
        FakeHttp.Chain chain = new FakeHttp.Chain();
        call(filter, headers(), chain);
        assertEquals(1, chain.calls);
    }

    @Test
    void anUnreadableKeyFileClosesTheApi() throws Exception {
        ApiKeyFilter filter = new ApiKeyFilter();
        filter.activate(context(Map.of()), Map.of("api-key-file", Path.of("/nonexistent/kiln/keys").toString()));
        FakeHttp.Chain chain = new FakeHttp.Chain();
        assertEquals(503, call(filter, headers("Authorization", "Bearer anything"), chain).status);
        assertEquals(0, chain.calls);
    }
}
