package dev.kiln.spec.draft;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.engine.FinishReason;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.api.engine.TokenListener;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ModelArchitecture;
import dev.kiln.api.model.ModelBuildOptions;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.loader.safetensors.SafetensorsCheckpointLoader;
import dev.kiln.loader.safetensors.SafetensorsFile;
import dev.kiln.loader.safetensors.TensorValues;
import dev.kiln.models.deepseek.DeepSeekV3Architecture;
import dev.kiln.models.llama.LlamaArchitecture;
import dev.kiln.models.llama.Qwen2Architecture;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/** Models built without OSGi on the CPU backend, the fixtures' references, and a listener that collects tokens. */
final class Harness {
    static final ComputeBackend BACKEND = new dev.kiln.backend.cpu.CpuBackend(2);
    static final AttentionKernel ATTENTION = new dev.kiln.attention.paged.PagedAttention();
    private static final List<ModelArchitecture> ARCHITECTURES =
            List.of(new Qwen2Architecture(), new LlamaArchitecture(), new DeepSeekV3Architecture());

    private Harness() {}

    static Path fixture(String name) {
        return Path.of(Objects.requireNonNull(System.getProperty("kiln.fixtures"), "kiln.fixtures"), "models", name);
    }

    /** The repository's embedded default model, or its draft ({@code models/default[-draft]}). */
    static Path defaultModel(String suffix) {
        return Path.of(System.getProperty("kiln.fixtures")).getParent().resolve("models").resolve("default" + suffix);
    }

    static CausalLanguageModel build(Path folder, int maxBatchTokens) {
        Checkpoint checkpoint;
        try {
            checkpoint = new SafetensorsCheckpointLoader().open(folder);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        ModelArchitecture architecture = ARCHITECTURES.stream().filter(a -> a.supports(checkpoint.config()))
                .findFirst().orElseThrow();
        return architecture.build(checkpoint, new ModelBuildOptions(BACKEND, ATTENTION, null, maxBatchTokens));
    }

    static int[] prompt(String fixture, int i) {
        return ints(fixture, "input_ids_" + i);
    }

    static int[] greedyContinuation(String fixture, int i) {
        int[] all = ints(fixture, "greedy_ids_" + i);
        return Arrays.copyOfRange(all, prompt(fixture, i).length, all.length);
    }

    private static int[] ints(String fixture, String name) {
        try (SafetensorsFile f = SafetensorsFile.open(fixture(fixture).resolve("reference.safetensors"))) {
            return TensorValues.toInts(f.tensor(name));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static GenerationRequest greedy(String id, int[] prompt, int maxTokens) {
        return new GenerationRequest(id, prompt, SamplingParams.GREEDY, maxTokens, 0, null, true, -1, null);
    }

    /** Collects a request's tokens and events. */
    static final class Collector implements TokenListener {
        private final List<Integer> tokens = new ArrayList<>();
        private final List<TokenEvent> events = new ArrayList<>();
        private final CountDownLatch done = new CountDownLatch(1);
        private volatile Throwable error;
        private volatile FinishReason finish;

        @Override
        public synchronized void onTokens(TokenEvent event) {
            events.add(event);
            for (int t : event.tokens()) tokens.add(t);
            if (event.finish() != null) {
                finish = event.finish();
                done.countDown();
            }
        }

        @Override
        public void onError(Throwable failure) {
            error = failure;
            done.countDown();
        }

        Collector await() {
            try {
                if (!done.await(120, TimeUnit.SECONDS)) throw new AssertionError("no terminal call within 120 s");
            } catch (InterruptedException e) {
                throw new AssertionError(e);
            }
            if (error != null) throw new AssertionError("request failed", error);
            return this;
        }

        synchronized int[] tokens() {
            return tokens.stream().mapToInt(Integer::intValue).toArray();
        }

        synchronized List<TokenEvent> events() {
            return List.copyOf(events);
        }

        FinishReason finish() {
            return finish;
        }
    }
}
