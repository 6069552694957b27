package dev.kiln.launcher;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;

/**
 * Fails fast, with a message a person understands, when the HTTP port is taken: otherwise Jetty would log a bind
 * error deep in the container while the launcher waits for a health check that never comes.
 */
final class PortCheck {
    private PortCheck() {}

    static void requireFree(String host, int port) {
        if (port < 0 || port > 65535) throw new IllegalArgumentException("port " + port + " is not a TCP port (0-65535)");
        if (port == 0) return;
        try (ServerSocket probe = new ServerSocket()) {
            probe.setReuseAddress(true);
            probe.bind(new InetSocketAddress(host, port));
        } catch (IOException e) {
            throw new IllegalStateException("cannot listen on " + host + ":" + port + ": " + e.getMessage()
                    + " (is another Kiln or another server running there? choose one with --port)");
        }
    }

    /** A free port on the host, for tests and for {@code --port 0}. */
    static int anyFree(String host) {
        try (ServerSocket probe = new ServerSocket()) {
            probe.bind(new InetSocketAddress(host, 0));
            return probe.getLocalPort();
        } catch (IOException e) {
            throw new IllegalStateException("no free port on " + host, e);
        }
    }
}
