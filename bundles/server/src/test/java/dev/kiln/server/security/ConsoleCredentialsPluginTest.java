package dev.kiln.server.security;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Hashtable;
import org.junit.jupiter.api.Test;

class ConsoleCredentialsPluginTest {
    private static final String HASH = "{sha-256}n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=";

    @Test
    void aConfigurationWithoutPasswordGetsTheLaunchersInsteadOfAdminAdmin() {
        Hashtable<String, Object> p = new Hashtable<>();
        p.put("http.service.filter", "(org.apache.felix.http.name=kiln-admin)");
        ConsoleCredentialsPlugin.fill(p, "operator", HASH);
        assertEquals(HASH, p.get("password"));
        assertEquals("operator", p.get("username"));
    }

    @Test
    void aPasswordTheConfigurationSetsIsKept() {
        Hashtable<String, Object> p = new Hashtable<>();
        p.put("password", "{sha-256}other");
        p.put("username", "root");
        ConsoleCredentialsPlugin.fill(p, "operator", HASH);
        assertEquals("{sha-256}other", p.get("password"));
        assertEquals("root", p.get("username"));
    }
}
