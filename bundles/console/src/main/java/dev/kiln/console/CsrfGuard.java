package dev.kiln.console;

import jakarta.servlet.http.HttpServletRequest;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.Base64;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Keeps other sites from submitting the console's forms with the browser's cached credentials. The web console
 * authenticates with HTTP Basic, which a browser attaches to any request, including one a hostile page makes: so a
 * state-changing POST must also carry a token that only a page rendered for this user can contain (an HMAC of the
 * user name under a key generated at start, compared in constant time) and must not come from another origin
 * ({@code Origin} and {@code Sec-Fetch-Site} headers, where the browser sends them).
 */
final class CsrfGuard {
    static final String FIELD = "csrf";
    private static final String ALGORITHM = "HmacSHA256";

    private final SecretKeySpec key;

    CsrfGuard() {
        byte[] secret = new byte[32];
        new SecureRandom().nextBytes(secret);
        key = new SecretKeySpec(secret, ALGORITHM);
    }

    /** The token the user's forms carry. */
    String token(String user) {
        try {
            Mac mac = Mac.getInstance(ALGORITHM);
            mac.init(key);
            byte[] tag = mac.doFinal(("kiln-console|" + (user == null ? "" : user)).getBytes(StandardCharsets.UTF_8));
            return Base64.getUrlEncoder().withoutPadding().encodeToString(tag);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("every Java runtime has HmacSHA256", e);
        }
    }

    /** Why the request must be refused, or null when it may change state. */
    String refusal(HttpServletRequest request, String user) {
        String fetchSite = request.getHeader("Sec-Fetch-Site");
        if (fetchSite != null && !fetchSite.equals("same-origin") && !fetchSite.equals("none")) {
            return "the request came from another site (" + fetchSite + ")";
        }
        String origin = request.getHeader("Origin");
        if (origin != null && !sameOrigin(origin, request)) return "the request came from another origin";
        String presented = request.getParameter(FIELD);
        if (presented == null) return "the form's security token is missing";
        byte[] expected = token(user).getBytes(StandardCharsets.US_ASCII);
        if (!MessageDigest.isEqual(expected, presented.getBytes(StandardCharsets.US_ASCII))) {
            return "the form's security token is wrong (reload the page)";
        }
        return null;
    }

    private static boolean sameOrigin(String origin, HttpServletRequest request) {
        try {
            URI o = URI.create(origin);
            int port = o.getPort() != -1 ? o.getPort() : "https".equalsIgnoreCase(o.getScheme()) ? 443 : 80;
            return request.getScheme().equalsIgnoreCase(o.getScheme()) && request.getServerName().equalsIgnoreCase(o.getHost())
                    && request.getServerPort() == port;
        } catch (IllegalArgumentException | NullPointerException e) {
            return false; // "null" (a sandboxed or file origin) or garbage: not ours
        }
    }
}
