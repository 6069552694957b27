package dev.kiln.engine.testing;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ModelArchitecture;
import dev.kiln.api.model.ModelBuildOptions;
import dev.kiln.loader.safetensors.SafetensorsCheckpointLoader;
import dev.kiln.loader.safetensors.SafetensorsFile;
import dev.kiln.loader.safetensors.TensorValues;
import dev.kiln.models.deepseek.DeepSeekV2Architecture;
import dev.kiln.models.deepseek.DeepSeekV3Architecture;
import dev.kiln.models.llama.LlamaArchitecture;
import dev.kiln.models.llama.Qwen2Architecture;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * The real pieces an engine runs on, built without OSGi (the CPU backend with two threads, paged attention, the
 * safetensors loader, the qwen2, llama and DeepSeek architectures), and the fixtures' reference continuations.
 */
public final class Fixtures {
    private static final ComputeBackend BACKEND = new dev.kiln.backend.cpu.CpuBackend(2);
    private static final AttentionKernel ATTENTION = new dev.kiln.attention.paged.PagedAttention();
    private static final List<ModelArchitecture> ARCHITECTURES = List.of(new Qwen2Architecture(), new LlamaArchitecture(),
            new DeepSeekV2Architecture(), new DeepSeekV3Architecture());

    private Fixtures() {}

    public static ComputeBackend backend() {
        return BACKEND;
    }

    public static AttentionKernel attention() {
        return ATTENTION;
    }

    /** The folder of a fixture model, from the {@code kiln.fixtures} system property. */
    public static Path folder(String fixture) {
        String root = Objects.requireNonNull(System.getProperty("kiln.fixtures"),
                "system property kiln.fixtures must name the fixtures folder");
        return Path.of(root, "models", fixture);
    }

    /** Builds a fixture's model with a workspace of {@code maxBatchTokens} tokens. */
    public static CausalLanguageModel build(String fixture, int maxBatchTokens) {
        Checkpoint checkpoint;
        try {
            checkpoint = new SafetensorsCheckpointLoader().open(folder(fixture));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        ModelArchitecture architecture = ARCHITECTURES.stream().filter(a -> a.supports(checkpoint.config())).findFirst()
                .orElseThrow();
        return architecture.build(checkpoint, new ModelBuildOptions(BACKEND, ATTENTION, null, maxBatchTokens));
    }

    /** Prompt {@code i} of a fixture: {@code input_ids_i}. */
    public static int[] prompt(String fixture, int i) {
        return ints(fixture, "input_ids_" + i);
    }

    /** The greedy continuation of prompt {@code i} (without the prompt). */
    public static int[] greedyContinuation(String fixture, int i) {
        int[] all = ints(fixture, "greedy_ids_" + i);
        return Arrays.copyOfRange(all, prompt(fixture, i).length, all.length);
    }

    /** {@code logits_i}: the reference logits at every prompt position, {@code [prompt, vocab]} row-major. */
    public static float[] promptLogits(String fixture, int i) {
        return floats(fixture, "logits_" + i);
    }

    /** {@code greedy_logits_i}: the reference logits over prompt and greedy continuation. */
    public static float[] greedyLogits(String fixture, int i) {
        return floats(fixture, "greedy_logits_" + i);
    }

    /** {@code last_hidden_i}: the final hidden states after the last norm at every prompt position, {@code [prompt, hidden]}. */
    public static float[] lastHidden(String fixture, int i) {
        return floats(fixture, "last_hidden_" + i);
    }

    private static int[] ints(String fixture, String name) {
        try (SafetensorsFile f = SafetensorsFile.open(folder(fixture).resolve("reference.safetensors"))) {
            return TensorValues.toInts(f.tensor(name));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static float[] floats(String fixture, String name) {
        try (SafetensorsFile f = SafetensorsFile.open(folder(fixture).resolve("reference.safetensors"))) {
            return TensorValues.toFloats(f.tensor(name));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
