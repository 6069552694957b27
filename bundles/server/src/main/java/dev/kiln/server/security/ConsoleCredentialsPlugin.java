package dev.kiln.server.security;

import dev.kiln.api.KilnProperties;
import java.util.Dictionary;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceReference;
import org.osgi.service.cm.ConfigurationPlugin;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;

/**
 * Keeps the web console's credentials when its configuration is changed through Config Admin. Felix Web Console
 * 5.0.18 treats a configuration of PID {@code org.apache.felix.webconsole.internal.servlet.OsgiManager} without a
 * hashed {@code password} as "use the default" and writes the hash of {@code admin} into it, so a configuration
 * that sets anything else (a root path, the listener to serve on) silently turns on admin/admin. This plugin adds
 * the launcher's user and password hash (framework properties {@code felix.webconsole.username} and
 * {@code felix.webconsole.password}) to such a configuration before the console receives it; a password the
 * configuration sets itself is left alone.
 */
@Component(property = {KilnProperties.NAME + "=console-credentials",
        ConfigurationPlugin.CM_TARGET + "=" + AdminEndpoint.CONSOLE_PID})
public final class ConsoleCredentialsPlugin implements ConfigurationPlugin {
    static final String USER_PROPERTY = "felix.webconsole.username";
    static final String PASSWORD_PROPERTY = "felix.webconsole.password";

    private String username;
    private String password;

    /** Created by Declarative Services. */
    public ConsoleCredentialsPlugin() {}

    @Activate
    void activate(BundleContext context) {
        username = context.getProperty(USER_PROPERTY);
        password = context.getProperty(PASSWORD_PROPERTY);
    }

    @Override
    public void modifyConfiguration(ServiceReference<?> reference, Dictionary<String, Object> properties) {
        fill(properties, username, password);
    }

    /** Adds the credentials a configuration lacks. */
    static void fill(Dictionary<String, Object> properties, String username, String password) {
        Object configured = properties.get("password");
        if (configured != null && !String.valueOf(configured).isBlank()) return;
        if (password != null && !password.isBlank()) {
            properties.put("password", password);
            if (username != null && !username.isBlank() && properties.get("username") == null) properties.put("username", username);
        }
    }
}
