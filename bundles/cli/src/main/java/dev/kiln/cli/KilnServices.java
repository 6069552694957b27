package dev.kiln.cli;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointLoader;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.engine.KvCacheDtypeSetting;
import dev.kiln.engine.ModelServices;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Collection;
import java.util.Dictionary;
import java.util.Hashtable;
import org.osgi.framework.BundleContext;
import org.osgi.framework.InvalidSyntaxException;
import org.osgi.framework.ServiceReference;
import org.osgi.service.cm.Configuration;
import org.osgi.service.cm.ConfigurationAdmin;

/**
 * Finds the registered services a job needs and loads a model folder with them. Services are looked up when a job
 * runs, not injected, because a job may first reconfigure one (the CPU backend's thread count) and must then wait
 * for the reconfigured service.
 */
final class KilnServices {
    /** Config Admin PID of the CPU backend; its {@code threads} property sets the worker count. */
    static final String CPU_BACKEND_PID = "dev.kiln.backend.cpu";
    private static final Duration WAIT = Duration.ofSeconds(20);

    private final BundleContext context;

    private final ModelServices models;

    KilnServices(BundleContext context) {
        this.context = context;
        this.models = new ModelServices(context, status -> { }, java.util.Set.of());
    }

    /**
     * The named backend; with {@code threads > 0} the CPU backend is first reconfigured to that many workers and the
     * service re-registered with them is returned.
     */
    ComputeBackend backend(String name, int threads) throws IOException, InterruptedException {
        String filter = "(" + KilnProperties.NAME + "=" + name + ")";
        if (threads > 0) {
            if (!name.equals("cpu")) throw new IllegalArgumentException("--threads applies to the cpu backend only");
            ServiceReference<ConfigurationAdmin> ref = context.getServiceReference(ConfigurationAdmin.class);
            if (ref == null) throw new IllegalStateException("Config Admin is not running");
            Configuration config = context.getService(ref).getConfiguration(CPU_BACKEND_PID, "?");
            Dictionary<String, Object> props = config.getProperties() == null ? new Hashtable<>() : config.getProperties();
            props.put("threads", threads);
            config.update(props);
            filter = "(&" + filter + "(threads=" + threads + "))";
        }
        return await(ComputeBackend.class, filter, "compute backend '" + name + "'"
                + (threads > 0 ? " with " + threads + " threads" : ""));
    }

    /** The attention kernel of that name for the backend. */
    AttentionKernel attention(String name, ComputeBackend backend) throws InterruptedException {
        return models.attention(name, backend);
    }

    /** The first tokenizer factory that reads the folder. */
    dev.kiln.api.tokenizer.TokenizerFactory tokenizerFactory(Path folder) throws InterruptedException {
        for (var f : all(dev.kiln.api.tokenizer.TokenizerFactory.class)) {
            if (f.canLoad(folder)) return f;
        }
        throw new IllegalArgumentException("no tokenizer factory reads " + folder + " (is there a tokenizer.json?)");
    }

    /** Opens the checkpoint with the first loader that recognises it. */
    Checkpoint openCheckpoint(Path folder) throws IOException, InterruptedException {
        if (!Files.exists(folder)) throw new IllegalArgumentException("model folder " + folder + " does not exist");
        for (CheckpointLoader candidate : all(CheckpointLoader.class)) {
            if (candidate.canLoad(folder)) return candidate.open(folder);
        }
        throw new IllegalArgumentException("no checkpoint loader recognises " + folder);
    }

    /**
     * Opens the checkpoint and builds it with the architecture that supports its configuration, in the checkpoint's
     * own weight format or quantized on load to {@code quantization} — exactly as the engine does.
     */
    CausalLanguageModel loadModel(Path folder, ComputeBackend backend, AttentionKernel attention, String quantization,
                                  int maxBatchTokens, KvCacheDtypeSetting kvCacheDtype)
            throws IOException, InterruptedException {
        return models.load(folder, backend, attention, quantization, maxBatchTokens, kvCacheDtype);
    }

    private <S> java.util.List<S> all(Class<S> type) throws InterruptedException {
        await(type, null, type.getSimpleName());
        try {
            Collection<ServiceReference<S>> refs = context.getServiceReferences(type, null);
            return refs.stream().sorted(java.util.Comparator.reverseOrder()).map(context::getService).toList();
        } catch (InvalidSyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    private <S> S await(Class<S> type, String filter, String what) throws InterruptedException {
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (true) {
            try {
                Collection<ServiceReference<S>> refs = context.getServiceReferences(type, filter);
                if (!refs.isEmpty()) {
                    // Highest ranking first: ServiceReference's natural order ranks the preferred one last.
                    ServiceReference<S> best = refs.stream().max(java.util.Comparator.naturalOrder()).orElseThrow();
                    S service = context.getService(best);
                    if (service != null) return service;
                }
            } catch (InvalidSyntaxException e) {
                throw new IllegalArgumentException("invalid name in " + filter, e);
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("no " + what + " is registered (waited " + WAIT.toSeconds() + " s)");
            }
            Thread.sleep(20);
        }
    }
}
