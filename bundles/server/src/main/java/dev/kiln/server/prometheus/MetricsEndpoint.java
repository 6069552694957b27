package dev.kiln.server.prometheus;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.engine.InferenceEngine;
import dev.kiln.server.security.AdminEndpoint;
import jakarta.servlet.Servlet;
import java.util.Hashtable;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceRegistration;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;
import org.osgi.service.component.annotations.ReferencePolicyOption;
import org.osgi.service.servlet.whiteboard.HttpWhiteboardConstants;

/**
 * Publishes {@code /metrics} on the admin listener when one is configured ({@code kiln serve --admin-port}),
 * else next to the API. The servlet is registered by hand rather than by annotations because which HTTP runtime
 * it targets is only known from the framework properties at start.
 */
@Component(immediate = true, property = KilnProperties.NAME + "=metrics")
public final class MetricsEndpoint {
    @Reference(cardinality = ReferenceCardinality.OPTIONAL, policy = ReferencePolicy.DYNAMIC,
            policyOption = ReferencePolicyOption.GREEDY)
    private volatile InferenceEngine engine;

    @Reference
    private RequestMetrics requests;

    private ServiceRegistration<Servlet> registration;

    /** Created by Declarative Services. */
    public MetricsEndpoint() {}

    @Activate
    void activate(BundleContext context) {
        Hashtable<String, Object> properties = new Hashtable<>();
        properties.put(HttpWhiteboardConstants.HTTP_WHITEBOARD_SERVLET_PATTERN, "/metrics");
        properties.put(HttpWhiteboardConstants.HTTP_WHITEBOARD_SERVLET_NAME, "kiln-metrics");
        properties.put(KilnProperties.NAME, "metrics");
        AdminEndpoint.targetOf(context).ifPresent(t -> properties.put(HttpWhiteboardConstants.HTTP_WHITEBOARD_TARGET, t));
        registration = context.registerService(Servlet.class, new MetricsServlet(() -> engine, requests), properties);
    }

    @Deactivate
    void deactivate() {
        try {
            registration.unregister();
        } catch (IllegalStateException alreadyGone) {
            // The bundle is stopping: the framework unregistered it already.
        }
    }
}
