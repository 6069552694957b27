package dev.kiln.launcher;

import dev.kiln.features.Features;
import dev.kiln.features.Features.BundleRef;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import org.osgi.framework.Bundle;
import org.osgi.framework.BundleContext;
import org.osgi.framework.BundleException;
import org.osgi.framework.Constants;
import org.osgi.framework.FrameworkEvent;
import org.osgi.framework.launch.Framework;
import org.osgi.framework.launch.FrameworkFactory;

/**
 * The embedded Felix framework with the bundles of some features installed and started in feature order.
 */
final class Container implements AutoCloseable {
    private final Framework framework;

    private Container(Framework framework) {
        this.framework = framework;
    }

    /**
     * Boots Felix with the given framework properties, installs every bundle of the features from the home's
     * {@code bundles/} folder, and starts them in order.
     *
     * @throws IllegalStateException naming the bundle that is missing or failed to start
     */
    static Container start(KilnHome home, List<String> features, Map<String, String> properties)
            throws BundleException, IOException {
        home.requireLayout();
        List<Path> jars = new ArrayList<>();
        for (BundleRef ref : Features.resolve(features)) {
            Path jar = home.bundles().resolve(ref.fileName());
            if (!Files.isRegularFile(jar)) {
                throw new IllegalStateException("bundle " + ref + " of features " + features + " is missing: " + jar);
            }
            jars.add(jar);
        }
        Map<String, String> config = new HashMap<>(properties);
        config.putIfAbsent(Constants.FRAMEWORK_STORAGE, home.data().resolve("cache").toString());
        config.putIfAbsent(Constants.FRAMEWORK_STORAGE_CLEAN, Constants.FRAMEWORK_STORAGE_CLEAN_ONFIRSTINIT);
        config.putIfAbsent("felix.log.level", "1");

        FrameworkFactory factory = ServiceLoader.load(FrameworkFactory.class).findFirst()
                .orElseThrow(() -> new IllegalStateException("no OSGi framework on the launcher's classpath"));
        Framework framework = factory.newFramework(config);
        framework.init();
        BundleContext context = framework.getBundleContext();
        List<Bundle> installed = new ArrayList<>();
        for (Path jar : jars) {
            try (InputStream in = Files.newInputStream(jar)) {
                installed.add(context.installBundle(jar.toUri().toString(), in));
            }
        }
        framework.start();
        for (Bundle bundle : installed) {
            if (bundle.getHeaders().get(Constants.FRAGMENT_HOST) != null) continue;
            try {
                bundle.start();
            } catch (BundleException e) {
                framework.stop();
                throw new IllegalStateException("bundle " + bundle.getSymbolicName() + " failed to start: " + e.getMessage(), e);
            }
        }
        return new Container(framework);
    }

    BundleContext context() {
        return framework.getBundleContext();
    }

    /** Blocks until the framework stops (a shutdown hook, or a bundle stopping it). */
    void awaitStop() throws InterruptedException {
        framework.waitForStop(0);
    }

    @Override
    public void close() {
        try {
            framework.stop();
            FrameworkEvent event = framework.waitForStop(Duration.ofSeconds(30).toMillis());
            if (event.getType() == FrameworkEvent.WAIT_TIMEDOUT) {
                System.err.println("kiln: the container did not stop within 30 s");
            }
        } catch (BundleException | InterruptedException e) {
            System.err.println("kiln: error while stopping the container: " + e.getMessage());
        }
    }
}
