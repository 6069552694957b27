package dev.kiln.engine;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointLoader;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ModelArchitecture;
import dev.kiln.api.model.ModelBuildOptions;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.api.tensor.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import java.util.Set;
import java.util.function.Consumer;
import org.osgi.framework.BundleContext;
import org.osgi.framework.InvalidSyntaxException;
import org.osgi.framework.ServiceReference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Finds the services a model is built with (a compute backend and an attention kernel by name, a checkpoint
 * loader that recognises the folder, an architecture that supports its configuration) and builds the model. The
 * names come from the engine's configuration, so the services are looked up when loading rather than injected; a
 * service not yet registered is waited for.
 *
 * <p>The weight format is the checkpoint's own when its {@code quantization_config} names one (the {@link Quantizer}
 * whose {@code kiln.name} is its {@code quant_method}), or the one asked for (quantized on load), or none (the
 * stored floating-point format). A format may have a provider per backend under one name: the one whose
 * {@code kiln.backend} is the backend's name, or that names no backend, and supports it, is taken.
 *
 * <p>The KV cache's element type follows the {@link KvCacheDtypeSetting} given (the engine's {@code kv-cache-dtype}:
 * {@code auto} is bf16 on the CUDA backend, f32 elsewhere); a load without one keeps the architecture's default, f32.
 *
 * <p>Every service obtained is remembered: the model uses them all for as long as it lives, so the engine reloads
 * when one of them goes away ({@link #uses}) and releases them with {@link #release()}. Tools that load a model
 * outside the engine use the same class.
 */
public final class ModelServices {
    private static final Logger LOG = LoggerFactory.getLogger(ModelServices.class);
    private static final long POLL_MILLIS = 100;
    private static final long WARN_AFTER_MILLIS = 10_000;

    private final BundleContext context;
    private final Consumer<String> status;
    private final Set<ServiceReference<?>> departing;
    private final List<ServiceReference<?>> held = new ArrayList<>();

    /**
     * @param status    told what the loading is doing or waiting for
     * @param departing services being unregistered: listeners hear of it while the service can still be found,
     *                  and a model must not be built on one
     */
    public ModelServices(BundleContext context, Consumer<String> status, Set<ServiceReference<?>> departing) {
        this.context = context;
        this.status = status;
        this.departing = departing;
    }

    /**
     * Builds the model in {@code folder} with the named backend and attention kernel, and the architecture's default
     * KV cache element type (f32).
     *
     * @param quantization the weight format to quantize to on load, or blank for the checkpoint's own
     * @throws InterruptedException when the loading thread is stopped while waiting for a service
     */
    public CausalLanguageModel load(Path folder, String backendName, String attentionName, String quantization,
                                    int maxBatchTokens) throws IOException, InterruptedException {
        return load(folder, backendName, attentionName, quantization, maxBatchTokens, null);
    }

    /**
     * Builds the model in {@code folder} with the named backend and attention kernel.
     *
     * @param quantization the weight format to quantize to on load, or blank for the checkpoint's own
     * @param kvCacheDtype the {@code kv-cache-dtype} setting, resolved for the backend; null for the architecture's
     *                     default (f32)
     * @throws IllegalArgumentException when the setting asks for a cache type the backend does not offer
     * @throws InterruptedException     when the loading thread is stopped while waiting for a service
     * @since 1.2
     */
    public CausalLanguageModel load(Path folder, String backendName, String attentionName, String quantization,
                                    int maxBatchTokens, KvCacheDtypeSetting kvCacheDtype)
            throws IOException, InterruptedException {
        // Checked here as well as below: a missing folder is refused at once, not after waiting for the backend.
        if (!Files.exists(folder)) throw new IllegalArgumentException("model folder " + folder + " does not exist");
        ComputeBackend backend = obtain(ComputeBackend.class, "(" + KilnProperties.NAME + "=" + backendName + ")",
                "compute backend '" + backendName + "'");
        return load(folder, backend, attention(attentionName, backend), quantization, maxBatchTokens, kvCacheDtype);
    }

    /** The named attention kernel for the backend, waiting until it is registered. */
    public AttentionKernel attention(String attentionName, ComputeBackend backend) throws InterruptedException {
        return obtain(AttentionKernel.class,
                "(&(" + KilnProperties.NAME + "=" + attentionName + ")(" + KilnProperties.BACKEND + "=" + backend.name() + "))",
                "attention kernel '" + attentionName + "' for backend " + backend.name());
    }

    /**
     * Builds the model in {@code folder} on the given backend and attention kernel, with the architecture's default
     * KV cache element type (f32).
     */
    public CausalLanguageModel load(Path folder, ComputeBackend backend, AttentionKernel attention, String quantization,
                                    int maxBatchTokens) throws IOException, InterruptedException {
        return load(folder, backend, attention, quantization, maxBatchTokens, null);
    }

    /**
     * Builds the model in {@code folder} on the given backend and attention kernel.
     *
     * @param kvCacheDtype the {@code kv-cache-dtype} setting, resolved for the backend; null for the architecture's
     *                     default (f32)
     * @throws IllegalArgumentException when the setting asks for a cache type the backend does not offer
     * @since 1.2
     */
    public CausalLanguageModel load(Path folder, ComputeBackend backend, AttentionKernel attention, String quantization,
                                    int maxBatchTokens, KvCacheDtypeSetting kvCacheDtype)
            throws IOException, InterruptedException {
        if (!Files.exists(folder)) throw new IllegalArgumentException("model folder " + folder + " does not exist");
        DType cacheType = kvCacheDtype == null ? null : kvCacheDtype.resolve(backend);
        status.accept("loading " + folder);
        Checkpoint checkpoint = open(folder);
        try {
            Quantizer quantizer = quantizer(checkpoint.config(), quantization, backend);
            for (ServiceReference<ModelArchitecture> ref : all(ModelArchitecture.class, "model architecture")) {
                ModelArchitecture architecture = context.getService(ref);
                if (architecture == null) continue;
                if (architecture.supports(checkpoint.config())) {
                    hold(ref);
                    return architecture.build(checkpoint,
                            new ModelBuildOptions(backend, attention, quantizer, maxBatchTokens, cacheType));
                }
                context.ungetService(ref);
            }
            throw new IllegalArgumentException(folder + ": no model architecture serves model_type '"
                    + checkpoint.config().modelType() + "' " + checkpoint.config().architectures());
        } catch (RuntimeException e) {
            checkpoint.close();
            throw e;
        }
    }

    /**
     * The quantizer for the checkpoint: the one its {@code quantization_config.quant_method} names, else the one
     * asked for, else none. Asking for a format other than the checkpoint's own is refused.
     */
    private Quantizer quantizer(ModelConfig config, String requested, ComputeBackend backend) throws InterruptedException {
        String stored = config.getObject("quantization_config")
                .map(q -> q.get("quant_method"))
                .map(String::valueOf)
                .orElse(null);
        String wanted = requested == null || requested.isBlank() ? null : requested.strip();
        if (stored != null && wanted != null && !stored.equals(wanted)) {
            throw config.invalid("quantization_config", "the checkpoint is stored as '" + stored
                    + "'; it cannot be served as '" + wanted + "'");
        }
        String name = stored != null ? stored : wanted;
        if (name == null) return null;
        if (!name.matches("[A-Za-z0-9_.-]+")) throw config.invalid("quantization_config", "invalid method name '" + name + "'");
        return quantizerFor(name, backend);
    }

    /**
     * Among the quantizers of that name (waiting until one is registered), the highest-ranked one for the backend:
     * registered for it ({@code kiln.backend} equal to its name) or for no backend in particular, and supporting it.
     * A format may have one provider per backend, each under the same name.
     */
    private Quantizer quantizerFor(String name, ComputeBackend backend) throws InterruptedException {
        String what = "quantizer '" + name + "'";
        String filter = "(" + KilnProperties.NAME + "=" + name + ")";
        long start = System.currentTimeMillis();
        boolean warned = false;
        status.accept("waiting for " + what);
        List<ServiceReference<Quantizer>> refs;
        while ((refs = references(Quantizer.class, filter)).isEmpty()) {
            if (!warned && System.currentTimeMillis() - start > WARN_AFTER_MILLIS) {
                warnStillWaiting(what);
                warned = true;
            }
            Thread.sleep(POLL_MILLIS);
        }
        for (ServiceReference<Quantizer> ref : refs) {
            if (!registeredFor(ref.getProperty(KilnProperties.BACKEND), backend.name())) continue;
            Quantizer quantizer = context.getService(ref);
            if (quantizer == null) continue;
            if (quantizer.supports(backend)) {
                hold(ref);
                return quantizer;
            }
            context.ungetService(ref);
        }
        throw new IllegalArgumentException("the '" + name + "' weight format has no kernels for the "
                + backend.name() + " backend");
    }

    /** Whether a {@code kiln.backend} property (absent, one name or several) admits the backend. */
    private static boolean registeredFor(Object property, String backend) {
        return switch (property) {
            case null -> true;
            case String[] names -> Arrays.asList(names).contains(backend);
            case Collection<?> names -> names.contains(backend);
            default -> backend.equals(String.valueOf(property));
        };
    }

    /** Whether the model uses the service. */
    public boolean uses(ServiceReference<?> reference) {
        synchronized (held) {
            return held.contains(reference);
        }
    }

    /** Releases every service obtained. */
    public void release() {
        synchronized (held) {
            for (ServiceReference<?> ref : held) {
                try {
                    context.ungetService(ref);
                } catch (IllegalStateException stoppedBundle) {
                    // The engine's own bundle is stopping: the framework releases its services itself.
                }
            }
            held.clear();
        }
    }

    private Checkpoint open(Path folder) throws IOException, InterruptedException {
        for (ServiceReference<CheckpointLoader> ref : all(CheckpointLoader.class, "checkpoint loader")) {
            CheckpointLoader loader = context.getService(ref);
            if (loader == null) continue;
            if (loader.canLoad(folder)) {
                hold(ref);
                return loader.open(folder);
            }
            context.ungetService(ref);
        }
        throw new IllegalArgumentException("no checkpoint loader recognises " + folder);
    }

    private void hold(ServiceReference<?> ref) {
        synchronized (held) {
            held.add(ref);
        }
    }

    /** The highest-ranked service matching the filter, waiting until one is registered. */
    private <S> S obtain(Class<S> type, String filter, String what) throws InterruptedException {
        long start = System.currentTimeMillis();
        boolean warned = false;
        status.accept("waiting for " + what);
        while (true) {
            for (ServiceReference<S> ref : references(type, filter)) {
                S service = context.getService(ref);
                if (service != null) {
                    hold(ref);
                    return service;
                }
            }
            if (!warned && System.currentTimeMillis() - start > WARN_AFTER_MILLIS) {
                warnStillWaiting(what);
                warned = true;
            }
            Thread.sleep(POLL_MILLIS);
        }
    }

    private static void warnStillWaiting(String what) {
        LOG.warn("still waiting for {} (is its bundle active? Vector API bundles need the JVM flag "
                + "--add-modules jdk.incubator.vector)", what);
    }

    /** Every service of the type, highest ranked first, waiting until there is at least one. */
    private <S> List<ServiceReference<S>> all(Class<S> type, String what) throws InterruptedException {
        status.accept("waiting for a " + what);
        while (true) {
            List<ServiceReference<S>> refs = references(type, null);
            if (!refs.isEmpty()) return refs;
            Thread.sleep(POLL_MILLIS);
        }
    }

    private <S> List<ServiceReference<S>> references(Class<S> type, String filter) {
        try {
            Collection<ServiceReference<S>> refs = context.getServiceReferences(type, filter);
            // ServiceReference orders by ranking, then age: the preferred one compares greatest.
            return refs.stream().filter(r -> !departing.contains(r)).sorted(Comparator.reverseOrder()).toList();
        } catch (InvalidSyntaxException e) {
            throw new IllegalArgumentException("invalid service name in " + filter, e);
        }
    }

    /** The object classes of the services a model is built with, for the listener that watches them. */
    public static Set<String> watchedTypes() {
        return Set.of(ComputeBackend.class.getName(), AttentionKernel.class.getName(),
                CheckpointLoader.class.getName(), ModelArchitecture.class.getName(), Quantizer.class.getName());
    }
}
