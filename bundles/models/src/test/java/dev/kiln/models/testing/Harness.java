package dev.kiln.models.testing;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ModelArchitecture;
import dev.kiln.api.model.ModelBuildOptions;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.api.tensor.DType;
import dev.kiln.loader.safetensors.SafetensorsCheckpointLoader;
import dev.kiln.models.deepseek.DeepSeekV2Architecture;
import dev.kiln.models.deepseek.DeepSeekV3Architecture;
import dev.kiln.models.llama.LlamaArchitecture;
import dev.kiln.models.llama.Qwen2Architecture;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;

/**
 * The real pieces a model runs with, constructed without OSGi: the CPU backend, the paged attention kernel, the
 * safetensors loader and this bundle's architectures; and the fixture checkpoints.
 */
public final class Harness {
    /** Block size of every test cache. */
    public static final int BLOCK_SIZE = 16;

    private static final ComputeBackend BACKEND = new dev.kiln.backend.cpu.CpuBackend(2);
    private static final AttentionKernel ATTENTION = new dev.kiln.attention.paged.PagedAttention();
    private static final List<ModelArchitecture> ARCHITECTURES = List.of(new Qwen2Architecture(), new LlamaArchitecture(),
            new DeepSeekV2Architecture(), new DeepSeekV3Architecture());

    private Harness() {}

    public static ComputeBackend backend() {
        return BACKEND;
    }

    public static AttentionKernel attention() {
        return ATTENTION;
    }

    /** The folder of a fixture model, from the {@code kiln.fixtures} system property. */
    public static Path fixture(String name) {
        String root = Objects.requireNonNull(System.getProperty("kiln.fixtures"),
                "system property kiln.fixtures must name the fixtures folder");
        return Path.of(root, "models", name);
    }

    /** Opens a fixture's checkpoint. */
    public static Checkpoint open(String fixture) {
        try {
            return new SafetensorsCheckpointLoader().open(fixture(fixture));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Builds a fixture's model with dense weights. */
    public static CausalLanguageModel build(String fixture, int maxBatchTokens) {
        return build(open(fixture), null, maxBatchTokens);
    }

    /** Builds a model from an opened checkpoint by the architecture that supports its configuration. */
    public static CausalLanguageModel build(Checkpoint checkpoint, Quantizer quantizer, int maxBatchTokens) {
        ModelArchitecture architecture = ARCHITECTURES.stream()
                .filter(a -> a.supports(checkpoint.config()))
                .findFirst()
                .orElseThrow(() -> new IllegalArgumentException("no architecture for " + checkpoint.config()));
        return architecture.build(checkpoint, new ModelBuildOptions(BACKEND, ATTENTION, quantizer, maxBatchTokens));
    }

    /**
     * Builds a model from an opened checkpoint on a proxy of the CPU backend: the attention kernel, which accepts
     * only the CPU backend itself, is handed the CPU backend wherever the model passes the proxy.
     */
    public static CausalLanguageModel buildOnProxy(Checkpoint checkpoint, ComputeBackend proxy, int maxBatchTokens) {
        ModelArchitecture architecture = ARCHITECTURES.stream()
                .filter(a -> a.supports(checkpoint.config()))
                .findFirst()
                .orElseThrow(() -> new IllegalArgumentException("no architecture for " + checkpoint.config()));
        AttentionKernel attention = (AttentionKernel) Proxy.newProxyInstance(AttentionKernel.class.getClassLoader(),
                new Class<?>[] {AttentionKernel.class}, (self, method, args) -> {
                    if (args != null) {
                        for (int i = 0; i < args.length; i++) if (args[i] == proxy) args[i] = BACKEND;
                    }
                    try {
                        return method.invoke(ATTENTION, args);
                    } catch (InvocationTargetException e) {
                        throw e.getCause();
                    }
                });
        return architecture.build(checkpoint, new ModelBuildOptions(proxy, attention, null, maxBatchTokens));
    }

    /**
     * Builds a model from an opened checkpoint with another attention kernel and a KV cache element type (null for
     * the architecture's default).
     */
    public static CausalLanguageModel build(Checkpoint checkpoint, AttentionKernel attention, DType kvCacheDtype,
                                            int maxBatchTokens) {
        ModelArchitecture architecture = ARCHITECTURES.stream()
                .filter(a -> a.supports(checkpoint.config()))
                .findFirst()
                .orElseThrow(() -> new IllegalArgumentException("no architecture for " + checkpoint.config()));
        return architecture.build(checkpoint, new ModelBuildOptions(BACKEND, attention, null, maxBatchTokens, kvCacheDtype));
    }

    /** The largest absolute difference between two arrays of equal length. */
    public static double maxAbsDiff(float[] actual, float[] expected) {
        if (actual.length != expected.length) {
            throw new AssertionError("lengths differ: " + actual.length + " vs " + expected.length);
        }
        double max = 0;
        for (int i = 0; i < actual.length; i++) {
            double d = Math.abs((double) actual[i] - expected[i]);
            if (!(d <= max)) max = d; // NaN propagates as the maximum
        }
        return max;
    }

    /** Rows {@code from..to-1} of a row-major matrix of {@code width} columns. */
    public static float[] rows(float[] matrix, int width, int from, int to) {
        return java.util.Arrays.copyOfRange(matrix, from * width, to * width);
    }
}
