package dev.kiln.spec.mtp;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.speculative.DraftSession;
import dev.kiln.api.speculative.SpeculativeProposer;
import dev.kiln.models.deepseek.MtpHead;
import java.util.Map;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Modified;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;

/**
 * The {@code mtp} proposer: drafts with the target's own multi-token prediction module (DeepSeek-V3, R1), which
 * predicts from the target's final hidden states (see {@link MtpSession}). Refuses targets without the module.
 *
 * <p>Configured by Config Admin PID {@code dev.kiln.spec.mtp}; a change applies to sessions opened afterwards.
 */
@Component(service = SpeculativeProposer.class, configurationPid = MtpProposer.PID,
        property = KilnProperties.NAME + "=mtp")
@Designate(ocd = MtpProposer.Config.class)
public final class MtpProposer implements SpeculativeProposer {
    /** Config Admin PID. */
    public static final String PID = "dev.kiln.spec.mtp";
    /** Default size of the module's KV cache: 32 MiB. */
    public static final long DEFAULT_KV_CACHE_MEMORY = 32L << 20;
    /** Default tokens per block of it. */
    public static final int DEFAULT_BLOCK_SIZE = 16;

    /** Configuration as the web console shows it. */
    @ObjectClassDefinition(name = "Kiln MTP proposer",
            description = "Speculative drafts from DeepSeek's multi-token prediction module")
    public @interface Config {
        @AttributeDefinition(name = "KV cache memory", description = "Bytes of the MTP module's own KV cache (one "
                + "layer of latent entries per token)")
        long kv$_$cache$_$memory() default DEFAULT_KV_CACHE_MEMORY;

        @AttributeDefinition(name = "Block size", description = "Tokens per block of that cache")
        int block$_$size() default DEFAULT_BLOCK_SIZE;
    }

    private volatile long kvCacheMemory = DEFAULT_KV_CACHE_MEMORY;
    private volatile int blockSize = DEFAULT_BLOCK_SIZE;

    /** A proposer with the default cache (Declarative Services configures it on activation). */
    public MtpProposer() {}

    /** A proposer with the given cache, for use without OSGi. */
    public MtpProposer(long kvCacheMemory, int blockSize) {
        configure(Map.of("kv-cache-memory", kvCacheMemory, "block-size", blockSize));
    }

    @Activate
    @Modified
    void configure(Map<String, Object> properties) {
        long memory = number(properties, "kv-cache-memory", DEFAULT_KV_CACHE_MEMORY);
        long block = number(properties, "block-size", DEFAULT_BLOCK_SIZE);
        if (memory <= 0 || block <= 0 || block > 4096) {
            throw new IllegalArgumentException("kv-cache-memory and block-size must be positive, got " + memory + ", " + block);
        }
        this.kvCacheMemory = memory;
        this.blockSize = (int) block;
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

    @Override
    public DraftSession open(CausalLanguageModel target) {
        MtpHead head = MtpHead.of(target).orElseThrow(() -> new IllegalArgumentException("the " + target.architecture()
                + " model has no multi-token prediction module (DeepSeek-V3 checkpoints with num_nextn_predict_layers)"));
        long bytesPerBlock = head.kvCacheSpec().bytesPerToken() * blockSize;
        long blocks = Math.min(Integer.MAX_VALUE / blockSize, kvCacheMemory / bytesPerBlock);
        if (blocks < 1) {
            throw new IllegalArgumentException("kv-cache-memory of " + kvCacheMemory + " bytes holds no block of the MTP module");
        }
        return new MtpSession(target, head, (int) blocks, blockSize);
    }
}
