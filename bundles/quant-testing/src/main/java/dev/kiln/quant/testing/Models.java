package dev.kiln.quant.testing;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ModelArchitecture;
import dev.kiln.api.model.ModelBuildOptions;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.attention.paged.PagedAttention;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.loader.safetensors.SafetensorsCheckpointLoader;
import dev.kiln.loader.safetensors.SafetensorsFile;
import dev.kiln.loader.safetensors.TensorValues;
import dev.kiln.models.deepseek.DeepSeekV2Architecture;
import dev.kiln.models.deepseek.DeepSeekV3Architecture;
import dev.kiln.models.llama.LlamaArchitecture;
import dev.kiln.models.llama.Qwen2Architecture;
import dev.kiln.models.runner.SequenceRunner;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;

/**
 * The real pieces a model runs with, constructed without OSGi (the CPU backend with two threads, paged attention,
 * the safetensors loader, the architectures), the fixture and default-model folders, and scoring a sequence.
 */
public final class Models {
    private static final CpuBackend BACKEND = new CpuBackend(2);
    private static final List<ModelArchitecture> ARCHITECTURES = List.of(new Qwen2Architecture(), new LlamaArchitecture(),
            new DeepSeekV2Architecture(), new DeepSeekV3Architecture());
    private static final int BLOCK_SIZE = 16;

    private Models() {}

    /** The backend every model and weight of the tests lives on. */
    public static CpuBackend backend() {
        return BACKEND;
    }

    /** A fixture's folder, from the {@code kiln.fixtures} system property. */
    public static Path fixture(String name) {
        return Path.of(property("kiln.fixtures"), "models", name);
    }

    /** The embedded default model's folder, from the {@code kiln.models} system property. */
    public static Path defaultModel() {
        return Path.of(property("kiln.models"), "default");
    }

    private static String property(String name) {
        return Objects.requireNonNull(System.getProperty(name), "system property " + name + " must be set");
    }

    /** Opens a checkpoint folder. */
    public static Checkpoint open(Path folder) {
        try {
            return new SafetensorsCheckpointLoader().open(folder);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Builds the model with the quantizer (or none) by the architecture that supports the configuration. */
    public static CausalLanguageModel build(Checkpoint checkpoint, Quantizer quantizer, int maxBatchTokens) {
        ModelArchitecture architecture = ARCHITECTURES.stream()
                .filter(a -> a.supports(checkpoint.config()))
                .findFirst()
                .orElseThrow(() -> new IllegalArgumentException("no architecture for " + checkpoint.config()));
        return architecture.build(checkpoint, new ModelBuildOptions(BACKEND, new PagedAttention(), quantizer, maxBatchTokens));
    }

    /** The logits after every token, {@code [tokens.length][vocab]}, from an empty cache, in chunks the model takes. */
    public static float[][] score(CausalLanguageModel model, int[] tokens) {
        int blocks = tokens.length / BLOCK_SIZE + 1;
        try (KvCache cache = model.allocateKvCache(blocks, BLOCK_SIZE)) {
            int[] table = new int[blocks];
            for (int i = 0; i < blocks; i++) table[i] = blocks - 1 - i;
            return new SequenceRunner(model, cache, table).score(tokens);
        }
    }

    /** A fixture's reference prompt {@code i} followed by its greedy continuation. */
    public static int[] referenceSequence(String fixture, int i) {
        try (SafetensorsFile file = SafetensorsFile.open(fixture(fixture).resolve("reference.safetensors"))) {
            return TensorValues.toInts(file.tensor("greedy_ids_" + i));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
