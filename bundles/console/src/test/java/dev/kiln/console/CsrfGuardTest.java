package dev.kiln.console;

import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;

import jakarta.servlet.http.HttpServletRequest;
import java.lang.reflect.Proxy;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

class CsrfGuardTest {
    /** A POST to http://127.0.0.1:9000 with the given headers and form parameters. */
    private static HttpServletRequest post(Map<String, String> headers, Map<String, String> parameters) {
        return (HttpServletRequest) Proxy.newProxyInstance(CsrfGuardTest.class.getClassLoader(),
                new Class<?>[] {HttpServletRequest.class}, (p, m, args) -> switch (m.getName()) {
                    case "getHeader" -> headers.get((String) args[0]);
                    case "getParameter" -> parameters.get((String) args[0]);
                    case "getScheme" -> "http";
                    case "getServerName" -> "127.0.0.1";
                    case "getServerPort" -> 9000;
                    default -> throw new UnsupportedOperationException(m.getName());
                });
    }

    private static Map<String, String> map(String... kv) {
        Map<String, String> m = new HashMap<>();
        for (int i = 0; i < kv.length; i += 2) m.put(kv[i], kv[i + 1]);
        return m;
    }

    @Test
    void theUsersOwnTokenFromTheSameOriginIsAccepted() {
        CsrfGuard guard = new CsrfGuard();
        String token = guard.token("admin");
        assertNull(guard.refusal(post(map("Origin", "http://127.0.0.1:9000", "Sec-Fetch-Site", "same-origin"),
                map(CsrfGuard.FIELD, token)), "admin"));
        assertNull(guard.refusal(post(map(), map(CsrfGuard.FIELD, token)), "admin"), "older browsers send neither header");
    }

    @Test
    void aMissingWrongOrOtherUsersTokenIsRefused() {
        CsrfGuard guard = new CsrfGuard();
        assertNotNull(guard.refusal(post(map(), map()), "admin"));
        assertNotNull(guard.refusal(post(map(), map(CsrfGuard.FIELD, "forged")), "admin"));
        assertNotNull(guard.refusal(post(map(), map(CsrfGuard.FIELD, guard.token("someone"))), "admin"));
        assertNotEquals(new CsrfGuard().token("admin"), guard.token("admin"), "tokens depend on a per-start secret");
    }

    @Test
    void requestsFromAnotherSiteAreRefusedEvenWithAToken() {
        CsrfGuard guard = new CsrfGuard();
        String token = guard.token("admin");
        assertNotNull(guard.refusal(post(map("Origin", "https://evil.example"), map(CsrfGuard.FIELD, token)), "admin"));
        assertNotNull(guard.refusal(post(map("Origin", "http://127.0.0.1:9001"), map(CsrfGuard.FIELD, token)), "admin"));
        assertNotNull(guard.refusal(post(map("Origin", "null"), map(CsrfGuard.FIELD, token)), "admin"));
        assertNotNull(guard.refusal(post(map("Sec-Fetch-Site", "cross-site"), map(CsrfGuard.FIELD, token)), "admin"));
    }
}
