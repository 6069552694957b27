package dev.kiln.server.security;

import dev.kiln.api.KilnProperties;
import java.io.IOException;
import java.util.Dictionary;
import java.util.Hashtable;
import java.util.Objects;
import java.util.Optional;
import org.osgi.framework.BundleContext;
import org.osgi.framework.InvalidSyntaxException;
import org.osgi.service.cm.Configuration;
import org.osgi.service.cm.ConfigurationAdmin;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A second HTTP listener for operators, apart from the API: with {@code kiln serve --admin-port P [--admin-host H]}
 * (framework properties {@code kiln.admin.port}, {@code kiln.admin.host}, default host 127.0.0.1) the web console
 * and {@code /metrics} are served there and no longer on the API's port.
 *
 * <p>Felix HTTP runs one Jetty per configuration of the factory PID {@code org.apache.felix.http}, each with its own
 * whiteboard named by {@code org.apache.felix.http.name}; whiteboard services choose a listener with the standard
 * {@code osgi.http.whiteboard.target} filter. This component creates the admin Jetty configuration and points the
 * web console at it (its {@code http.service.filter} setting, PID
 * {@code org.apache.felix.webconsole.internal.servlet.OsgiManager}). The admin listener uses TLS when the API does,
 * with the same keystore. It also answers the API and {@code /health}, with the same key checks.
 *
 * <p>The console's configuration carries the launcher's user and password hash: without a password in it, the
 * console would fall back to admin/admin (see {@link ConsoleCredentialsPlugin}).
 */
@Component(immediate = true, property = KilnProperties.NAME + "=admin-endpoint")
public final class AdminEndpoint {
    /** Framework property: the admin listener's port; absent: no admin listener. */
    public static final String PORT_PROPERTY = "kiln.admin.port";
    /** Framework property: the address the admin listener binds. */
    public static final String HOST_PROPERTY = "kiln.admin.host";
    /** The admin Jetty's {@code org.apache.felix.http.name}. */
    public static final String HTTP_NAME = "kiln-admin";
    static final String JETTY_FACTORY_PID = "org.apache.felix.http";
    static final String CONSOLE_PID = "org.apache.felix.webconsole.internal.servlet.OsgiManager";
    static final String CONSOLE_TARGET_KEY = "http.service.filter";
    private static final String TARGET = "(org.apache.felix.http.name=" + HTTP_NAME + ")";
    // Configurations are shared with bundles other than this one: "?" lets any bundle receive them.
    private static final String ANY_LOCATION = "?";
    private static final Logger LOG = LoggerFactory.getLogger(AdminEndpoint.class);

    @Reference
    private ConfigurationAdmin configurationAdmin;

    /** Created by Declarative Services. */
    public AdminEndpoint() {}

    /** The whiteboard target filter that selects the admin listener, when one is configured. */
    public static Optional<String> targetOf(BundleContext context) {
        return port(context).isPresent() ? Optional.of(TARGET) : Optional.empty();
    }

    @Activate
    void activate(BundleContext context) throws IOException, InvalidSyntaxException {
        Optional<Integer> port = port(context);
        if (port.isEmpty()) {
            removeStale();
            return;
        }
        String host = Objects.requireNonNullElse(context.getProperty(HOST_PROPERTY), "127.0.0.1");
        boolean tls = Boolean.parseBoolean(context.getProperty("org.apache.felix.https.enable"));
        Configuration jetty = configurationAdmin.getFactoryConfiguration(JETTY_FACTORY_PID, HTTP_NAME, ANY_LOCATION);
        jetty.updateIfDifferent(jettyProperties(host, port.get(), tls));
        String password = context.getProperty(ConsoleCredentialsPlugin.PASSWORD_PROPERTY);
        if (password == null || !password.startsWith("{")) {
            // Without the launcher's hashed password the console would take this configuration as "use admin/admin".
            LOG.error("the web console is not moved to the admin listener: no hashed {} framework property",
                    ConsoleCredentialsPlugin.PASSWORD_PROPERTY);
        } else {
            Configuration console = configurationAdmin.getConfiguration(CONSOLE_PID, ANY_LOCATION);
            Dictionary<String, Object> consoleProperties = console.getProperties() == null ? new Hashtable<>() : console.getProperties();
            consoleProperties.put(CONSOLE_TARGET_KEY, TARGET);
            ConsoleCredentialsPlugin.fill(consoleProperties, context.getProperty(ConsoleCredentialsPlugin.USER_PROPERTY), password);
            console.updateIfDifferent(consoleProperties);
        }
        LOG.info("admin listener (web console, /metrics) on {}://{}:{}", tls ? "https" : "http", host, port.get());
    }

    /**
     * The admin Jetty's settings. Every key that the API's Jetty reads from framework properties and that would
     * clash (ports, which protocols are on) is set explicitly, because a factory Jetty falls back to the framework
     * properties for keys its configuration lacks.
     */
    static Hashtable<String, Object> jettyProperties(String host, int port, boolean tls) {
        Hashtable<String, Object> p = new Hashtable<>();
        p.put("org.apache.felix.http.name", HTTP_NAME);
        p.put("org.apache.felix.http.host", host);
        p.put("org.apache.felix.http.enable", Boolean.toString(!tls));
        p.put("org.apache.felix.https.enable", Boolean.toString(tls));
        p.put("org.osgi.service.http.port", Integer.toString(tls ? 0 : port));
        p.put("org.osgi.service.http.port.secure", Integer.toString(tls ? port : 0));
        return p;
    }

    /** A previous run's admin configuration must not outlive the option (the framework cache normally goes). */
    private void removeStale() throws IOException, InvalidSyntaxException {
        Configuration[] jetty = configurationAdmin.listConfigurations(
                "(&(service.factoryPid=" + JETTY_FACTORY_PID + ")(org.apache.felix.http.name=" + HTTP_NAME + "))");
        if (jetty != null) for (Configuration c : jetty) c.delete();
        Configuration[] console = configurationAdmin.listConfigurations("(service.pid=" + CONSOLE_PID + ")");
        if (console != null) {
            for (Configuration c : console) {
                Dictionary<String, Object> p = c.getProperties();
                if (p != null && TARGET.equals(p.get(CONSOLE_TARGET_KEY))) {
                    p.remove(CONSOLE_TARGET_KEY);
                    c.update(p);
                }
            }
        }
    }

    private static Optional<Integer> port(BundleContext context) {
        String value = context.getProperty(PORT_PROPERTY);
        if (value == null || value.isBlank()) return Optional.empty();
        try {
            int port = Integer.parseInt(value.strip());
            if (port < 1 || port > 65535) throw new NumberFormatException();
            return Optional.of(port);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(PORT_PROPERTY + " must be a port number, found '" + value + "'");
        }
    }
}
