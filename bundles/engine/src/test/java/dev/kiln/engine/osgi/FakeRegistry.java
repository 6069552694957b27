package dev.kiln.engine.osgi;

import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Hashtable;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;
import org.osgi.framework.BundleContext;
import org.osgi.framework.Constants;
import org.osgi.framework.Filter;
import org.osgi.framework.FrameworkUtil;
import org.osgi.framework.InvalidSyntaxException;
import org.osgi.framework.ServiceEvent;
import org.osgi.framework.ServiceListener;
import org.osgi.framework.ServiceReference;

/**
 * A service registry with just what the engine component uses of a {@link BundleContext}: framework properties,
 * filtered lookups, get/unget, and service listeners told of unregistrations. Enough to drive the component's
 * loading and reloading without an OSGi framework.
 */
final class FakeRegistry {
    private record Registration(Object service, Hashtable<String, Object> properties, ServiceReference<?> reference) {}

    private final List<Registration> registrations = new CopyOnWriteArrayList<>();
    private final List<ServiceListener> listeners = new CopyOnWriteArrayList<>();
    private final Map<String, String> frameworkProperties;
    private final AtomicLong ids = new AtomicLong(1);

    FakeRegistry(Map<String, String> frameworkProperties) {
        this.frameworkProperties = frameworkProperties;
    }

    /** Registers a service under one interface with the given properties; returns its reference. */
    ServiceReference<?> register(Class<?> type, Object service, Map<String, Object> properties) {
        var props = new Hashtable<String, Object>(properties);
        props.put(Constants.OBJECTCLASS, new String[] {type.getName()});
        props.put(Constants.SERVICE_ID, ids.getAndIncrement());
        ServiceReference<?> ref = reference(props);
        registrations.add(new Registration(service, props, ref));
        return ref;
    }

    /** Tells the listeners, then removes the service. */
    void unregister(ServiceReference<?> reference) {
        for (ServiceListener l : listeners) l.serviceChanged(new ServiceEvent(ServiceEvent.UNREGISTERING, reference));
        registrations.removeIf(r -> r.reference() == reference);
    }

    BundleContext context() {
        return (BundleContext) Proxy.newProxyInstance(getClass().getClassLoader(), new Class<?>[] {BundleContext.class},
                (proxy, method, args) -> switch (method.getName()) {
                    case "getProperty" -> frameworkProperties.get((String) args[0]);
                    case "getServiceReferences" -> references((Class<?>) args[0], (String) args[1]);
                    case "getService" -> registrations.stream().filter(r -> r.reference() == args[0])
                            .map(Registration::service).findFirst().orElse(null);
                    case "ungetService" -> true;
                    case "addServiceListener" -> listeners.add((ServiceListener) args[0]);
                    case "removeServiceListener" -> listeners.remove(args[0]);
                    case "hashCode" -> System.identityHashCode(proxy);
                    case "equals" -> proxy == args[0];
                    case "toString" -> "fake bundle context";
                    default -> throw new UnsupportedOperationException(method.getName());
                });
    }

    private Collection<ServiceReference<?>> references(Class<?> type, String filter) throws InvalidSyntaxException {
        Filter f = filter == null ? null : FrameworkUtil.createFilter(filter);
        List<ServiceReference<?>> out = new ArrayList<>();
        for (Registration r : registrations) {
            String[] classes = (String[]) r.properties().get(Constants.OBJECTCLASS);
            if (!classes[0].equals(type.getName())) continue;
            if (f == null || f.match(r.properties())) out.add(r.reference());
        }
        return out;
    }

    private static ServiceReference<?> reference(Hashtable<String, Object> props) {
        return (ServiceReference<?>) Proxy.newProxyInstance(FakeRegistry.class.getClassLoader(),
                new Class<?>[] {ServiceReference.class}, new java.lang.reflect.InvocationHandler() {
                    @Override
                    public Object invoke(Object proxy, java.lang.reflect.Method method, Object[] args) {
                        return switch (method.getName()) {
                            case "getProperty" -> props.get((String) args[0]);
                            case "getPropertyKeys" -> props.keySet().toArray(new String[0]);
                            case "compareTo" -> compare(props, ((ServiceReference<?>) args[0]));
                            case "hashCode" -> System.identityHashCode(proxy);
                            case "equals" -> proxy == args[0];
                            case "toString" -> "reference to " + props;
                            default -> throw new UnsupportedOperationException(method.getName());
                        };
                    }
                });
    }

    /** OSGi order: higher ranking is greater; at equal ranking the older service (lower id) is greater. */
    private static int compare(Hashtable<String, Object> props, ServiceReference<?> other) {
        int ranking = props.get(Constants.SERVICE_RANKING) instanceof Integer r ? r : 0;
        int otherRanking = other.getProperty(Constants.SERVICE_RANKING) instanceof Integer r ? r : 0;
        if (ranking != otherRanking) return Integer.compare(ranking, otherRanking);
        return Long.compare((Long) other.getProperty(Constants.SERVICE_ID), (Long) props.get(Constants.SERVICE_ID));
    }
}
