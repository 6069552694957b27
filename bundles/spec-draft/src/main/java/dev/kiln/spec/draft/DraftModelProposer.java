package dev.kiln.spec.draft;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.speculative.DraftSession;
import dev.kiln.api.speculative.SpeculativeProposer;
import dev.kiln.engine.ModelServices;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Function;
import org.osgi.framework.BundleContext;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Modified;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;

/**
 * The {@code draft-model} proposer: any model Kiln can load that shares the target's tokenizer drafts greedily
 * over a paged KV cache of its own (see {@link DraftModelSession}).
 *
 * <p>The draft model is loaded when an engine opens a session (on the target's compute backend, with the named
 * attention kernel, through {@link ModelServices} like the engine's own model), not when the bundle starts: a
 * draft model costs memory only while it is in use. Its folder is the configuration's {@code draft-model}, else the
 * framework property {@code kiln.draft-model}, else the target's folder name with {@code -draft} appended when such
 * a folder exists (the embedded default model ships its draft that way). A draft whose {@code tokenizer.json}
 * differs from the target's is refused.
 *
 * <p>Configured by Config Admin PID {@code dev.kiln.spec.draft}; a change applies to sessions opened afterwards.
 */
@Component(service = SpeculativeProposer.class, configurationPid = DraftModelProposer.PID,
        property = KilnProperties.NAME + "=draft-model")
@Designate(ocd = DraftModelProposer.Config.class)
public final class DraftModelProposer implements SpeculativeProposer {
    /** Config Admin PID. */
    public static final String PID = "dev.kiln.spec.draft";
    /** Default size of the draft model's KV cache: 64 MiB. */
    public static final long DEFAULT_KV_CACHE_MEMORY = 64L << 20;
    /** Default tokens per block of the draft model's KV cache. */
    public static final int DEFAULT_BLOCK_SIZE = 16;
    /** Default workspace of the draft model: the most tokens it runs in one forward. */
    public static final int DEFAULT_MAX_BATCH_TOKENS = 256;

    /** Configuration as the web console shows it. */
    @ObjectClassDefinition(name = "Kiln draft-model proposer",
            description = "Speculative drafts from a smaller model with the target's tokenizer")
    public @interface Config {
        @AttributeDefinition(name = "Draft model folder", description = "Hugging Face checkpoint folder; empty: the "
                + "framework property kiln.draft-model, else the target's folder with -draft appended")
        String draft$_$model() default "";

        @AttributeDefinition(name = "Attention kernel", description = "kiln.name of the AttentionKernel the draft "
                + "model runs with (on the target's backend)")
        String attention() default "paged";

        @AttributeDefinition(name = "KV cache memory", description = "Bytes of the draft model's own KV cache")
        long kv$_$cache$_$memory() default DEFAULT_KV_CACHE_MEMORY;

        @AttributeDefinition(name = "Block size", description = "Tokens per block of the draft model's KV cache")
        int block$_$size() default DEFAULT_BLOCK_SIZE;

        @AttributeDefinition(name = "Max batch tokens", description = "Most tokens per forward of the draft model "
                + "(longer catch-ups are split)")
        int max$_$batch$_$tokens() default DEFAULT_MAX_BATCH_TOKENS;
    }

    /**
     * A loaded draft model and what gives back the services it was built with.
     *
     * @param model   the model
     * @param release called after the model is closed
     */
    public record DraftModel(CausalLanguageModel model, Runnable release) {}

    /** Where the draft model comes from, given the target's folder (null when unknown). */
    @FunctionalInterface
    public interface ModelSource {
        /** Loads the draft model for a target on the target's backend. */
        DraftModel load(Path targetFolder, ComputeBackend backend) throws Exception;
    }

    private volatile ModelSource source;
    private volatile long kvCacheMemory = DEFAULT_KV_CACHE_MEMORY;
    private volatile int blockSize = DEFAULT_BLOCK_SIZE;

    /** Created by Declarative Services, which activates it with its context and configuration. */
    public DraftModelProposer() {}

    /**
     * A proposer outside OSGi.
     *
     * @param source        loads the draft model
     * @param kvCacheMemory bytes of the draft model's KV cache
     * @param blockSize     tokens per block of it
     */
    public DraftModelProposer(ModelSource source, long kvCacheMemory, int blockSize) {
        this.source = Objects.requireNonNull(source);
        this.kvCacheMemory = kvCacheMemory;
        this.blockSize = blockSize;
    }

    @Activate
    @Modified
    void configure(BundleContext context, Map<String, Object> properties) {
        String configured = string(properties, "draft-model");
        String folder = configured.isBlank() ? Objects.requireNonNullElse(context.getProperty("kiln.draft-model"), "")
                : configured;
        String attention = string(properties, "attention");
        String attentionName = attention.isBlank() ? "paged" : attention;
        int maxBatchTokens = (int) number(properties, "max-batch-tokens", DEFAULT_MAX_BATCH_TOKENS);
        this.kvCacheMemory = number(properties, "kv-cache-memory", DEFAULT_KV_CACHE_MEMORY);
        this.blockSize = (int) number(properties, "block-size", DEFAULT_BLOCK_SIZE);
        if (kvCacheMemory <= 0 || blockSize <= 0 || maxBatchTokens <= 0) {
            throw new IllegalArgumentException("kv-cache-memory, block-size and max-batch-tokens must be positive");
        }
        this.source = (targetFolder, backend) -> {
            Path draft = draftFolder(folder.isBlank() ? null : Path.of(folder), targetFolder);
            requireSameTokenizer(targetFolder, draft);
            var services = new ModelServices(context, s -> { }, ConcurrentHashMap.newKeySet());
            try {
                return new DraftModel(services.load(draft, backend, services.attention(attentionName, backend), "",
                        maxBatchTokens), services::release);
            } catch (Exception | LinkageError e) {
                services.release();
                throw e;
            }
        };
    }

    private static String string(Map<String, Object> properties, String key) {
        Object v = properties.get(key);
        return v == null ? "" : String.valueOf(v).trim();
    }

    private static long number(Map<String, Object> properties, String key, long fallback) {
        Object v = properties.get(key);
        if (v == null || (v instanceof String s && s.isBlank())) return fallback;
        if (v instanceof Number n) return n.longValue();
        try {
            return Long.parseLong(String.valueOf(v).trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(key + " must be an integer, found '" + v + "'");
        }
    }

    /** The configured folder, else the target's folder with {@code -draft} appended when it exists. */
    static Path draftFolder(Path configured, Path targetFolder) {
        if (configured != null) return configured;
        if (targetFolder != null && targetFolder.getFileName() != null) {
            Path sibling = targetFolder.resolveSibling(targetFolder.getFileName() + "-draft");
            if (Files.isDirectory(sibling)) return sibling;
        }
        throw new IllegalArgumentException("no draft model configured (set draft-model in " + PID
                + " or the framework property kiln.draft-model)");
    }

    /** Refuses a draft whose tokenizer.json differs from the target's (when both folders have one). */
    static void requireSameTokenizer(Path targetFolder, Path draftFolder) {
        if (targetFolder == null) return;
        Path a = targetFolder.resolve("tokenizer.json");
        Path b = draftFolder.resolve("tokenizer.json");
        if (!Files.isRegularFile(a) || !Files.isRegularFile(b)) return;
        try {
            if (Files.mismatch(a, b) != -1) {
                throw new IllegalArgumentException("the draft model in " + draftFolder + " has another tokenizer than "
                        + "the target in " + targetFolder + ": its drafts would be other tokens");
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Override
    public DraftSession open(CausalLanguageModel target) {
        ModelSource from = source;
        if (from == null) throw new IllegalStateException("the draft-model proposer is not configured");
        Path targetFolder = target.config().source() == null ? null : target.config().source().toAbsolutePath().getParent();
        return new DraftModelSession(target, backend -> from.load(targetFolder, backend), kvCacheMemory, blockSize);
    }

    /** A proposer whose draft model is built by {@code build} from the target's backend (for tests and tools). */
    public static DraftModelProposer of(Function<ComputeBackend, CausalLanguageModel> build, long kvCacheMemory,
                                        int blockSize) {
        return new DraftModelProposer((folder, backend) -> new DraftModel(build.apply(backend), () -> { }),
                kvCacheMemory, blockSize);
    }
}
