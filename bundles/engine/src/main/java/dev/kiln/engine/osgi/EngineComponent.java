package dev.kiln.engine.osgi;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.engine.EngineStats;
import dev.kiln.api.engine.GenerationHandle;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.InferenceEngine;
import dev.kiln.api.engine.ModelDescription;
import dev.kiln.api.engine.TokenListener;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.sampling.LogitsProcessor;
import dev.kiln.api.sampling.Sampler;
import dev.kiln.api.speculative.ProposerStats;
import dev.kiln.api.speculative.SpeculativeProposer;
import dev.kiln.engine.EngineSettings;
import dev.kiln.engine.InferenceEngineCore;
import dev.kiln.engine.KvCacheDtypeSetting;
import dev.kiln.engine.ModelServices;
import dev.kiln.engine.SpeculationSettings;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Collectors;
import org.osgi.framework.BundleContext;
import org.osgi.framework.Constants;
import org.osgi.framework.InvalidSyntaxException;
import org.osgi.framework.ServiceEvent;
import org.osgi.framework.ServiceListener;
import org.osgi.framework.ServiceReference;
import org.osgi.service.component.ComponentServiceObjects;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Modified;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;
import org.osgi.service.component.annotations.ReferencePolicyOption;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The engine as an OSGi service, configured by Config Admin PID {@code dev.kiln.engine}.
 *
 * <p>On activation the configured model folder (or the framework property {@code kiln.model}) is loaded in a
 * background thread with the named compute backend and attention kernel, waiting for them if they are not
 * registered yet; until then {@link #model()} is empty and {@link #submit} refuses with "no model loaded" and what
 * the loading is doing. A loading failure is logged and reported the same way, never thrown into Declarative
 * Services. If a service the model was built with goes away, the engine fails the requests in flight and loads the
 * model again when a replacement appears.
 *
 * <p>The sampler and the logits processors are bound dynamically: one installed, replaced or removed at runtime
 * applies from the next engine step, and requests in flight continue. Without any sampler only greedy requests are
 * served.
 *
 * <p>Speculative decoding uses the {@link SpeculativeProposer} service whose {@code kiln.name} the property
 * {@code speculative} names (the highest ranked among equals), with {@code num-speculative-tokens} draft tokens
 * per step while the running batch has at most {@code speculative-max-batch} sequences. Every proposer service is
 * tracked, but only the selected one is obtained (so a draft model is loaded only when it is used). Changing these
 * three properties, or installing, updating or stopping a proposer's bundle, swaps the proposer between two engine
 * steps while requests stream: none fails, greedy outputs do not change. Any other configuration change reloads
 * the engine; deactivation fails the requests in flight with a clear error and frees the model and its cache.
 *
 * <p>Token listeners are called on the engine thread and must return quickly (see {@link InferenceEngineCore}).
 */
@Component(service = InferenceEngine.class, configurationPid = KilnProperties.ENGINE_PID,
        property = {KilnProperties.NAME + "=default"})
@Designate(ocd = EngineComponent.Config.class)
public final class EngineComponent implements InferenceEngine {
    private static final Logger LOG = LoggerFactory.getLogger(EngineComponent.class);

    /**
     * The engine's configuration as described to Config Admin clients (the web console). The component reads the
     * properties by these names itself ({@link Settings}), accepting numbers written as strings in .cfg files.
     */
    @ObjectClassDefinition(name = "Kiln inference engine",
            description = "Continuous batching over a paged KV cache for one model")
    public @interface Config {
        @AttributeDefinition(name = "Model folder", description = "Hugging Face checkpoint folder; empty: the "
                + "framework property kiln.model")
        String model() default "";

        @AttributeDefinition(name = "Served model name", description = "The id clients use; empty: the folder's name")
        String served$_$model$_$name() default "";

        @AttributeDefinition(name = "Compute backend", description = "kiln.name of the ComputeBackend service")
        String backend() default "cpu";

        @AttributeDefinition(name = "Attention kernel", description = "kiln.name of the AttentionKernel service")
        String attention() default "paged";

        @AttributeDefinition(name = "Quantization", description = "Weight format to quantize to on load (kiln.name of a "
                + "Quantizer: weight_only_int8, fp8, ...); empty: the checkpoint's own quantization_config, or none")
        String quantization() default "";

        @AttributeDefinition(name = "Block size", description = "Tokens per KV cache block")
        int block$_$size() default EngineSettings.DEFAULT_BLOCK_SIZE;

        @AttributeDefinition(name = "KV cache memory", description = "Bytes of KV cache; 0: 1 GiB, or less when the "
                + "model needs less for max-num-seqs full contexts")
        long kv$_$cache$_$memory() default 0;

        @AttributeDefinition(name = "KV cache element type", description = "What the KV cache stores: auto (bf16 on "
                + "the cuda backend, f32 elsewhere), f32, or bf16 (half the memory per token; cuda only); empty: the "
                + "framework property kiln.kv-cache-dtype, or auto")
        String kv$_$cache$_$dtype() default "";

        @AttributeDefinition(name = "Max sequences", description = "Most sequences in the running batch")
        int max$_$num$_$seqs() default EngineSettings.DEFAULT_MAX_NUM_SEQS;

        @AttributeDefinition(name = "Max batched tokens", description = "Most tokens per forward step; longer "
                + "prompts are prefilled in chunks")
        int max$_$num$_$batched$_$tokens() default EngineSettings.DEFAULT_MAX_NUM_BATCHED_TOKENS;

        @AttributeDefinition(name = "Max waiting", description = "Most queued requests; more are refused (HTTP 429)")
        int max$_$waiting() default EngineSettings.DEFAULT_MAX_WAITING;

        @AttributeDefinition(name = "Max model length", description = "Longest prompt + output; 0: the model's "
                + "max_position_embeddings capped by the KV cache")
        int max$_$model$_$len() default 0;

        @AttributeDefinition(name = "Speculative proposer", description = "kiln.name of the SpeculativeProposer to "
                + "draft with (reference, draft-model, mtp, ...); empty: the framework property kiln.speculative, or "
                + "no speculative decoding. Changes apply while serving.")
        String speculative() default "";

        @AttributeDefinition(name = "Speculative tokens", description = "Draft tokens per sequence and step; 0: the "
                + "framework property kiln.num-speculative-tokens, or " + SpeculationSettings.DEFAULT_NUM_SPECULATIVE_TOKENS)
        int num$_$speculative$_$tokens() default 0;

        @AttributeDefinition(name = "Speculation max batch", description = "Steps with more running sequences than "
                + "this do not draft (verification would cost more than it saves); -1: the framework property "
                + "kiln.speculative-max-batch, or " + SpeculationSettings.DEFAULT_MAX_BATCH)
        int speculative$_$max$_$batch() default -1;
    }

    /** Configuration properties that change the speculation only, applied without reloading the model. */
    private static final List<String> SPECULATION_PROPERTIES =
            List.of("speculative", "num-speculative-tokens", "speculative-max-batch");

    /** Typed reads of configuration properties, which may arrive as numbers or as strings. */
    private record Settings(Map<String, Object> properties) {
        String string(String key, String fallback) {
            Object v = properties.get(key);
            return v == null ? fallback : String.valueOf(v).trim();
        }

        long number(String key, long fallback) {
            Object v = properties.get(key);
            if (v == null || (v instanceof String s && s.isBlank())) return fallback;
            if (v instanceof Number n) return n.longValue();
            try {
                return Long.parseLong(String.valueOf(v).trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(key + " must be an integer, found '" + v + "'");
            }
        }

        int integer(String key, int fallback) {
            long v = number(key, fallback);
            if (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE) throw new IllegalArgumentException(key + " is out of range: " + v);
            return (int) v;
        }
    }

    /** A loaded model with its engine and the services it was built with. */
    private record Loaded(InferenceEngineCore core, CausalLanguageModel model, ModelServices services) {}

    /** A registered proposer service, not obtained until selected. */
    private record ProposerService(ComponentServiceObjects<SpeculativeProposer> objects, Map<String, Object> properties) {}

    /** The proposer service in use and the instance obtained from it. */
    private record SelectedProposer(ProposerService service, SpeculativeProposer proposer) {}

    private final Object lifecycle = new Object();
    private final List<Map.Entry<Map<String, Object>, LogitsProcessor>> processorEntries = new ArrayList<>();
    private volatile Sampler sampler;
    /** Guards the proposer services, the selection and its application to the engine. */
    private final Object speculationLock = new Object();
    private final List<ProposerService> proposerServices = new ArrayList<>();
    private SelectedProposer selectedProposer;
    private SpeculationSettings speculation = SpeculationSettings.OFF;
    private Map<String, Object> modelProperties = Map.of();
    private volatile List<LogitsProcessor> processors = List.of();

    private BundleContext context;
    private EngineSettings settings;
    private String backendName;
    private String attentionName;
    private String quantization;
    private KvCacheDtypeSetting kvCacheDtype = KvCacheDtypeSetting.AUTO;
    private Path folder;
    private ServiceListener watcher;
    private Thread loader;
    private boolean deactivated;
    private final Set<ServiceReference<?>> departing = ConcurrentHashMap.newKeySet();
    private volatile Loaded loaded;
    private volatile String status = "not activated";

    /** Created by Declarative Services. */
    public EngineComponent() {}

    @Activate
    void activate(BundleContext context, Map<String, Object> properties) {
        this.context = context;
        synchronized (lifecycle) {
            deactivated = false;
        }
        this.modelProperties = withoutSpeculation(properties);
        String configured;
        try {
            var config = new Settings(properties);
            applySpeculation(speculationSettings(config));
            // `kiln serve --backend/--max-num-seqs/--kv-cache-memory` arrive as framework properties; configuration wins.
            this.backendName = config.string("backend", Objects.requireNonNullElse(context.getProperty("kiln.backend"), "cpu"));
            this.attentionName = config.string("attention", "paged");
            String requestedFormat = config.string("quantization", "");
            if (requestedFormat.isBlank()) requestedFormat = Objects.requireNonNullElse(context.getProperty("kiln.quantization"), "");
            this.quantization = requestedFormat;
            // `kiln serve --kv-cache-dtype` arrives as a framework property; configuration wins.
            String cacheType = config.string(KvCacheDtypeSetting.PROPERTY, "");
            if (cacheType.isBlank()) cacheType = context.getProperty(KvCacheDtypeSetting.FRAMEWORK_PROPERTY);
            this.kvCacheDtype = KvCacheDtypeSetting.parse(cacheType);
            configured = config.string("model", "");
            if (configured.isBlank()) configured = context.getProperty("kiln.model");
            // `kiln serve --served-model-name/--max-model-len` arrive as framework properties; configuration wins.
            String servedName = config.string("served-model-name", "");
            if (servedName.isBlank()) servedName = Objects.requireNonNullElse(context.getProperty("kiln.served-model-name"), "");
            int maxModelLen = config.integer("max-model-len", 0);
            if (maxModelLen == 0) maxModelLen = frameworkInteger("kiln.max-model-len", 0);
            this.settings = new EngineSettings(blankToNull(servedName), configured,
                    config.integer("block-size", EngineSettings.DEFAULT_BLOCK_SIZE),
                    config.number("kv-cache-memory", frameworkNumber("kiln.kv-cache-memory", 0)),
                    config.integer("max-num-seqs", frameworkInteger("kiln.max-num-seqs", EngineSettings.DEFAULT_MAX_NUM_SEQS)),
                    config.integer("max-num-batched-tokens", EngineSettings.DEFAULT_MAX_NUM_BATCHED_TOKENS),
                    config.integer("max-waiting", EngineSettings.DEFAULT_MAX_WAITING),
                    maxModelLen);
            this.folder = configured == null || configured.isBlank() ? null : Path.of(configured);
        } catch (IllegalArgumentException e) { // InvalidPathException included
            status = "invalid configuration " + KilnProperties.ENGINE_PID + ": " + e.getMessage();
            LOG.error("the engine has no model: {}", status);
            return;
        }
        if (folder == null) {
            status = "no model configured (set 'model' in " + KilnProperties.ENGINE_PID
                    + " or the framework property kiln.model)";
            LOG.info("engine started without a model: {}", status);
            return;
        }
        this.watcher = this::serviceChanged;
        String filter = ModelServices.watchedTypes().stream().map(t -> "(" + Constants.OBJECTCLASS + "=" + t + ")")
                .collect(Collectors.joining("", "(|", ")"));
        try {
            context.addServiceListener(watcher, filter);
        } catch (InvalidSyntaxException e) {
            throw new IllegalStateException(e); // the filter is built from class names: cannot happen
        }
        synchronized (lifecycle) {
            startLoading();
        }
    }

    /**
     * A configuration change: when only the speculation properties changed, the new proposer or numbers apply from
     * the next engine step; any other change reloads the engine, as deactivating and activating would.
     */
    @Modified
    void modified(Map<String, Object> properties) {
        if (sameValues(withoutSpeculation(properties), modelProperties)) {
            try {
                applySpeculation(speculationSettings(new Settings(properties)));
            } catch (IllegalArgumentException e) {
                LOG.error("invalid speculative decoding configuration in {}; keeping {}: {}", KilnProperties.ENGINE_PID,
                        speculationStatus(), e.getMessage());
            }
            return;
        }
        LOG.info("the engine configuration changed: reloading the model");
        deactivate();
        activate(context, properties);
    }

    /**
     * Equal maps, comparing values by their text and arrays (multi-valued properties) by their contents: the same
     * setting read back from a .cfg file is the text "4" where the console's configuration form stored the number 4,
     * and must not reload the model a second time.
     */
    static boolean sameValues(Map<String, Object> a, Map<String, Object> b) {
        return a.keySet().equals(b.keySet()) && a.keySet().stream().allMatch(k -> textOf(a.get(k)).equals(textOf(b.get(k))));
    }

    private static String textOf(Object value) {
        return value != null && value.getClass().isArray() ? java.util.Arrays.deepToString(new Object[] {value}) : String.valueOf(value);
    }

    private static Map<String, Object> withoutSpeculation(Map<String, Object> properties) {
        Map<String, Object> rest = new HashMap<>(properties);
        SPECULATION_PROPERTIES.forEach(rest::remove);
        return rest;
    }

    /** The speculation properties, with the framework properties of {@code kiln serve} as defaults. */
    private SpeculationSettings speculationSettings(Settings config) {
        String name = config.string("speculative", "");
        if (name.isBlank()) name = Objects.requireNonNullElse(context.getProperty("kiln.speculative"), "").trim();
        if (!name.isBlank() && !name.matches("[A-Za-z0-9_.-]+")) {
            throw new IllegalArgumentException("speculative must be a proposer's kiln.name, found '" + name + "'");
        }
        int tokens = config.integer("num-speculative-tokens", 0);
        if (tokens == 0) {
            tokens = frameworkInteger("kiln.num-speculative-tokens", SpeculationSettings.DEFAULT_NUM_SPECULATIVE_TOKENS);
        }
        int maxBatch = config.integer("speculative-max-batch", -1);
        if (maxBatch == -1) maxBatch = frameworkInteger("kiln.speculative-max-batch", SpeculationSettings.DEFAULT_MAX_BATCH);
        return new SpeculationSettings(name, tokens, maxBatch);
    }

    /** An integer framework property (set by {@code kiln serve}), or the fallback when absent. */
    private int frameworkInteger(String key, int fallback) {
        String value = context.getProperty(key);
        return value == null ? fallback : new Settings(Map.of(key, value)).integer(key, fallback);
    }

    /** A byte count or other long framework property (set by {@code kiln serve}), or the fallback when absent. */
    private long frameworkNumber(String key, long fallback) {
        String value = context.getProperty(key);
        return value == null ? fallback : new Settings(Map.of(key, value)).number(key, fallback);
    }

    @Deactivate
    void deactivate() {
        Thread running;
        synchronized (lifecycle) {
            deactivated = true;
            running = loader;
        }
        if (watcher != null) {
            try {
                context.removeServiceListener(watcher);
            } catch (IllegalStateException stoppedBundle) {
                // The framework drops the listeners of a stopping bundle itself.
            }
        }
        if (running != null) {
            running.interrupt();
            joinUninterruptibly(running);
        }
        unload("the engine was stopped (its bundle stopped or its configuration changed)");
        synchronized (speculationLock) {
            select(null); // gives the proposer instance back
        }
        status = "stopped";
    }

    // ---------------------------------------------------------------- dynamic services

    @Reference(cardinality = ReferenceCardinality.OPTIONAL, policy = ReferencePolicy.DYNAMIC,
            policyOption = ReferencePolicyOption.GREEDY, unbind = "unbindSampler")
    void bindSampler(Sampler bound) {
        sampler = bound;
        Loaded l = loaded;
        if (l != null) l.core().setSampler(bound);
    }

    void unbindSampler(Sampler unbound) {
        // A replacement is bound before the old one is unbound: only clear when the unbound one is current.
        if (sampler != unbound) return;
        sampler = null;
        Loaded l = loaded;
        if (l != null) l.core().setSampler(null);
    }

    /**
     * Tracks a proposer service without obtaining it: only the one the configuration names is obtained, so that
     * proposers that load a model do so only when used.
     */
    @Reference(service = SpeculativeProposer.class, cardinality = ReferenceCardinality.MULTIPLE,
            policy = ReferencePolicy.DYNAMIC, policyOption = ReferencePolicyOption.GREEDY, unbind = "removeProposer")
    void addProposer(ComponentServiceObjects<SpeculativeProposer> objects, Map<String, Object> properties) {
        synchronized (speculationLock) {
            proposerServices.add(new ProposerService(objects, properties));
            reselect();
        }
    }

    /**
     * A proposer service goes away (its bundle stops or is updated): when it is the one in use, the engine stops
     * calling it before this returns, and its sequences continue without drafts or with a replacement.
     */
    void removeProposer(ComponentServiceObjects<SpeculativeProposer> objects, Map<String, Object> properties) {
        synchronized (speculationLock) {
            proposerServices.removeIf(p -> p.objects() == objects);
            reselect();
        }
    }

    private void applySpeculation(SpeculationSettings settings) {
        synchronized (speculationLock) {
            speculation = settings;
            reselect();
        }
    }

    /** Selects the best service of the configured name and hands it to the engine (with the lock held). */
    private void reselect() {
        String name = speculation.proposer();
        ProposerService best = name == null ? null : proposerServices.stream()
                .filter(p -> name.equals(p.properties().get(KilnProperties.NAME)))
                .min(Comparator.<ProposerService>comparingInt(p -> -ranking(p.properties()))
                        .thenComparingLong(p -> serviceId(p.properties())))
                .orElse(null);
        if (name != null && best == null) LOG.info("speculative proposer '{}' is not registered (yet): no speculation", name);
        select(best);
    }

    /** Makes {@code service} the proposer in use (or none), obtaining and giving back instances (lock held). */
    private void select(ProposerService service) {
        SelectedProposer previous = selectedProposer;
        if (previous == null || previous.service() != service) {
            SpeculativeProposer proposer = null;
            if (service != null) {
                try {
                    proposer = service.objects().getService();
                } catch (RuntimeException e) {
                    LOG.error("the speculative proposer '{}' could not be obtained", speculation.proposer(), e);
                }
            }
            selectedProposer = proposer == null ? null : new SelectedProposer(service, proposer);
        }
        Loaded l = loaded;
        if (l != null) applyTo(l.core());
        if (previous != null && previous != selectedProposer) {
            try {
                previous.service().objects().ungetService(previous.proposer());
            } catch (RuntimeException alreadyGone) {
                // The service is unregistering: the framework releases it itself.
            }
        }
    }

    /** Hands the selected proposer and settings to an engine (lock held). */
    private void applyTo(InferenceEngineCore core) {
        SelectedProposer selected = selectedProposer;
        core.setSpeculation(selected == null ? null : selected.proposer(), speculation);
    }

    /** The speculative decoding in force: "off", the proposer and its settings, or why it is off. */
    public String speculationStatus() {
        Loaded l = loaded;
        return l == null ? "off (no model loaded)" : l.core().speculationStatus();
    }

    /** What each proposer used by the loaded engine achieved. */
    @Override
    public List<ProposerStats> speculativeStats() {
        Loaded l = loaded;
        return l == null ? List.of() : l.core().speculativeStats();
    }

    @Reference(cardinality = ReferenceCardinality.MULTIPLE, policy = ReferencePolicy.DYNAMIC,
            policyOption = ReferencePolicyOption.GREEDY, unbind = "unbindProcessor")
    void bindProcessor(LogitsProcessor processor, Map<String, Object> properties) {
        synchronized (processorEntries) {
            processorEntries.add(Map.entry(properties, processor));
            publishProcessors();
        }
    }

    void unbindProcessor(LogitsProcessor processor, Map<String, Object> properties) {
        synchronized (processorEntries) {
            processorEntries.removeIf(e -> e.getValue() == processor);
            publishProcessors();
        }
    }

    /** Highest {@code service.ranking} first, then the oldest service (lowest id), as OSGi prefers. */
    private void publishProcessors() {
        processors = processorEntries.stream()
                .sorted(Comparator.<Map.Entry<Map<String, Object>, LogitsProcessor>>comparingInt(e -> -ranking(e.getKey()))
                        .thenComparingLong(e -> serviceId(e.getKey())))
                .map(Map.Entry::getValue)
                .toList();
        Loaded l = loaded;
        if (l != null) l.core().setLogitsProcessors(processors);
    }

    private static int ranking(Map<String, Object> properties) {
        return properties.get(Constants.SERVICE_RANKING) instanceof Integer r ? r : 0;
    }

    private static long serviceId(Map<String, Object> properties) {
        return properties.get(Constants.SERVICE_ID) instanceof Long id ? id : Long.MAX_VALUE;
    }

    // ---------------------------------------------------------------- InferenceEngine

    @Override
    public GenerationHandle submit(GenerationRequest request, TokenListener listener) {
        Loaded l = loaded;
        if (l == null) throw new IllegalStateException("no model loaded (" + status + ")");
        return l.core().submit(request, listener);
    }

    @Override
    public Optional<ModelDescription> model() {
        Loaded l = loaded;
        return l == null ? Optional.empty() : l.core().model();
    }

    @Override
    public EngineStats stats() {
        Loaded l = loaded;
        return l == null ? new EngineStats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) : l.core().stats();
    }

    /** What the engine is doing: loaded, loading, waiting for a service, failed (with the cause), stopped. */
    public String status() {
        return status;
    }

    // ---------------------------------------------------------------- loading

    /** Starts the loading thread (with the lifecycle lock held). */
    private void startLoading() {
        if (deactivated) return;
        status = "loading " + folder;
        loader = new Thread(this::load, "kiln-model-loader");
        loader.setDaemon(true);
        loader.start();
    }

    private void load() {
        ModelServices services = new ModelServices(context, s -> status = s, departing);
        CausalLanguageModel model = null;
        InferenceEngineCore core = null;
        long start = System.nanoTime();
        try {
            model = services.load(folder, backendName, attentionName, quantization, settings.maxNumBatchedTokens(),
                    kvCacheDtype);
            core = new InferenceEngineCore(model, settings, sampler, processors);
            // Published with the speculation lock held, so that a proposer selected meanwhile reaches this engine.
            synchronized (speculationLock) {
                synchronized (lifecycle) {
                    if (!deactivated) {
                        // Bindings that changed while loading reach the engine too, before anyone can use it.
                        core.setSampler(sampler);
                        core.setLogitsProcessors(processors);
                        applyTo(core);
                        loaded = new Loaded(core, model, services);
                        status = "loaded";
                        LOG.info("model {} loaded from {} in {} ms", core.model().orElseThrow().id(), folder,
                                (System.nanoTime() - start) / 1_000_000);
                        return;
                    }
                }
            }
        } catch (InterruptedException e) {
            status = "stopped while loading";
        } catch (Exception | LinkageError e) {
            status = "failed to load " + folder + ": " + e.getMessage();
            LOG.error("the engine could not load the model in {}", folder, e);
        }
        // Deactivated meanwhile, interrupted or failed: nothing of this attempt survives.
        if (core != null) core.close();
        if (model != null) closeQuietly(model);
        services.release();
    }

    /** Stops the engine and frees the model; requests in flight receive {@code onError} with the reason. */
    private void unload(String reason) {
        Loaded l;
        synchronized (lifecycle) {
            l = loaded;
            loaded = null;
        }
        if (l == null) return;
        l.core().close(reason);
        closeQuietly(l.model());
        l.services().release();
    }

    /** A service the model was built with is going away: drop the model, then load again when one is back. */
    private void serviceChanged(ServiceEvent event) {
        if (event.getType() != ServiceEvent.UNREGISTERING) return;
        Object classes = event.getServiceReference().getProperty(Constants.OBJECTCLASS);
        if (!(classes instanceof String[] names) || Arrays.stream(names).noneMatch(ModelServices.watchedTypes()::contains)) {
            return;
        }
        // Remembered for good: a reference of an unregistered service never comes back, and these are few.
        departing.add(event.getServiceReference());
        Loaded l = loaded;
        if (l == null || !l.services().uses(event.getServiceReference())) return;
        LOG.warn("a service the model uses is going away ({}): stopping the engine and loading again",
                Arrays.toString(names));
        unload("a service the model uses went away (" + String.join(", ", names) + "); the model is being reloaded");
        synchronized (lifecycle) {
            startLoading();
        }
    }

    private static void closeQuietly(CausalLanguageModel model) {
        try {
            model.close();
        } catch (RuntimeException e) {
            LOG.warn("closing the model failed", e);
        }
    }

    private static void joinUninterruptibly(Thread thread) {
        boolean interrupted = false;
        while (thread.isAlive()) {
            try {
                thread.join();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
    }

    private static String blankToNull(String s) {
        return s == null || s.isBlank() ? null : s;
    }
}
