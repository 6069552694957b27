package dev.kiln.server.security;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Hashtable;
import org.junit.jupiter.api.Test;

class AdminEndpointTest {
    @Test
    void plainAdminListenerTurnsHttpsOffExplicitly() {
        Hashtable<String, Object> p = AdminEndpoint.jettyProperties("127.0.0.1", 9000, false);
        assertEquals(AdminEndpoint.HTTP_NAME, p.get("org.apache.felix.http.name"));
        assertEquals("127.0.0.1", p.get("org.apache.felix.http.host"));
        assertEquals("true", p.get("org.apache.felix.http.enable"));
        assertEquals("false", p.get("org.apache.felix.https.enable"));
        assertEquals("9000", p.get("org.osgi.service.http.port"));
    }

    @Test
    void withTlsTheAdminListenerServesHttpsOnItsOwnPort() {
        Hashtable<String, Object> p = AdminEndpoint.jettyProperties("0.0.0.0", 9443, true);
        assertEquals("false", p.get("org.apache.felix.http.enable"));
        assertEquals("true", p.get("org.apache.felix.https.enable"));
        assertEquals("9443", p.get("org.osgi.service.http.port.secure"));
    }
}
