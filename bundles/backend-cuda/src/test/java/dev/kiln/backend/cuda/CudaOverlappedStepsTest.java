package dev.kiln.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.PendingTokens;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.engine.FinishReason;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.api.engine.TokenListener;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.api.model.ForwardResult;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cuda.internal.TokenReadbacks;
import dev.kiln.backend.cuda.testing.Data;
import dev.kiln.backend.cuda.testing.Fixtures;
import dev.kiln.backend.cuda.testing.Gpu;
import dev.kiln.engine.EngineSettings;
import dev.kiln.engine.InferenceEngineCore;
import dev.kiln.sampler.DefaultSampler;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Steps queued before the tokens of the step ahead are read back: the backend's pending choices equal its immediate
 * ones, its embedding resolves placeholders on the device to the rows the resolved ids give, a slot reused before
 * its tokens were awaited keeps them, and the engine, which overlaps steps on this backend, reproduces the
 * fixtures' greedy continuations with steps really queued ahead.
 */
class CudaOverlappedStepsTest {
    private static CudaBackend gpu;
    private final Random random = new Random(23);

    @BeforeAll
    static void start() {
        gpu = Gpu.backend();
    }

    @Test
    void pendingChoicesEqualImmediateOnesAndSurviveTheirSlotsReuse() {
        int rows = 7, columns = 3000;
        List<Tensor> logits = new ArrayList<>();
        List<PendingTokens> pending = new ArrayList<>();
        List<int[]> expected = new ArrayList<>();
        float[] params = new float[4 * rows];
        double[] uniforms = new double[rows];
        for (int r = 0; r < rows; r++) {
            params[4 * r] = 0.7f;
            params[4 * r + 1] = r % 2 == 0 ? 20 : 0;
            params[4 * r + 2] = 0.9f;
            uniforms[r] = random.nextDouble();
        }
        try {
            // Five pending choices, none awaited until the end: the two slots are each reused while holding tokens.
            for (int k = 0; k < 5; k++) {
                Tensor x = gpu.allocate(DType.F32, rows, columns);
                float[] values = new float[rows * columns];
                for (int i = 0; i < values.length; i++) values[i] = (float) random.nextGaussian() * 3;
                gpu.write(values, x);
                logits.add(x);
                boolean sample = k % 2 == 1;
                expected.add(sample ? gpu.sampleRows(x, params, uniforms) : gpu.argmaxRows(x));
                pending.add(sample ? gpu.sampleRowsPending(x, params, uniforms) : gpu.argmaxRowsPending(x));
            }
            for (int k = 0; k < 5; k++) {
                assertEquals(rows, pending.get(k).count());
                assertArrayEquals(expected.get(k), pending.get(k).await(), "pending choice " + k);
                assertArrayEquals(expected.get(k), pending.get(k).await(), "pending choice " + k + ", awaited again");
            }
        } finally {
            logits.forEach(Tensor::close);
        }
    }

    @Test
    void theEmbeddingResolvesPlaceholdersOnTheDevice() {
        int vocab = 64, hidden = 40;
        float[] table = Data.representable(random, vocab * hidden, DType.BF16);
        try (Weight embedding = gpu.denseWeight(Data.tensor("embed", DType.BF16, table, vocab, hidden));
             Tensor logits = gpu.allocate(DType.F32, 3, vocab);
             Tensor viaDevice = gpu.allocate(DType.F32, 6, hidden);
             Tensor viaHost = gpu.allocate(DType.F32, 6, hidden)) {
            float[] values = new float[3 * vocab];
            int[] best = {17, 63, 0};
            for (int r = 0; r < 3; r++) values[r * vocab + best[r]] = 5;
            gpu.write(values, logits);
            PendingTokens chosen = gpu.argmaxRowsPending(logits);
            int[] ids = {5, PendingTokens.placeholder(1), 9, PendingTokens.placeholder(0), PendingTokens.placeholder(2), 5};
            gpu.embed(embedding, ids, chosen, viaDevice); // queued before anyone waits for the choice
            assertFalse(((TokenReadbacks.Pending) chosen).isRead(), "the embedding waited for the pending tokens");
            gpu.embed(embedding, new int[] {5, best[1], 9, best[0], best[2], 5}, viaHost);
            assertArrayEquals(gpu.read(viaHost), gpu.read(viaDevice));
            assertArrayEquals(best, chosen.await());
            // Once read, the host resolves them: the same rows.
            gpu.embed(embedding, ids, chosen, viaDevice);
            assertArrayEquals(gpu.read(viaHost), gpu.read(viaDevice));
            assertThrows(IllegalArgumentException.class,
                    () -> gpu.embed(embedding, new int[] {PendingTokens.placeholder(3)}, gpu.argmaxRowsPending(logits), viaDevice),
                    "a placeholder past the pending rows");
            assertThrows(IllegalArgumentException.class,
                    () -> gpu.embed(embedding, new int[] {vocab, PendingTokens.placeholder(0)}, gpu.argmaxRowsPending(logits), viaDevice),
                    "an id past the table");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "deepseek-v3-tiny"})
    void theEngineOverlapsStepsAndReproducesTheReferenceContinuations(String fixture) throws Exception {
        AtomicInteger queuedAhead = new AtomicInteger();
        CausalLanguageModel real = Fixtures.build(fixture, gpu, Gpu.attention(), 256);
        CausalLanguageModel watched = watching(real, queuedAhead);
        var settings = EngineSettings.defaults().withKvCacheMemory(32L << 20).withMaxNumSeqs(16);
        try (InferenceEngineCore engine = new InferenceEngineCore(watched, settings, new DefaultSampler(), List.of())) {
            List<CompletableFuture<int[]>> outputs = new ArrayList<>();
            List<int[]> expected = new ArrayList<>();
            for (int i = 0; i < 12; i++) {
                int[] prompt = Fixtures.ints(fixture, "input_ids_" + i % 2);
                int[] greedy = Fixtures.ints(fixture, "greedy_ids_" + i % 2);
                int length = Math.min(greedy.length - prompt.length, 1 + i);
                expected.add(Arrays.copyOfRange(greedy, prompt.length, prompt.length + length));
                outputs.add(submit(engine, new GenerationRequest("r" + i, prompt, SamplingParams.GREEDY, length, 0,
                        null, true, -1, null)));
            }
            for (int i = 0; i < outputs.size(); i++) {
                assertArrayEquals(expected.get(i), outputs.get(i).get(60, TimeUnit.SECONDS), fixture + " request " + i);
            }
            long deadline = System.nanoTime() + 10_000_000_000L;
            while (engine.stats().running() > 0 && System.nanoTime() < deadline) Thread.sleep(1);
            assertEquals(0, engine.stats().kvBlocksUsed(), "blocks left behind");
        } finally {
            real.close();
        }
        System.out.printf("%s: %d steps queued ahead of the tokens they read%n", fixture, queuedAhead.get());
        assertTrue(queuedAhead.get() > 0, "no step was queued ahead of the tokens it reads");
    }

    private static CompletableFuture<int[]> submit(InferenceEngineCore engine, GenerationRequest request) {
        CompletableFuture<int[]> done = new CompletableFuture<>();
        List<Integer> tokens = new ArrayList<>();
        engine.submit(request, new TokenListener() {
            @Override
            public void onTokens(TokenEvent event) {
                for (int t : event.tokens()) tokens.add(t);
                if (event.finish() != null) {
                    if (event.finish() == FinishReason.LENGTH) {
                        done.complete(tokens.stream().mapToInt(Integer::intValue).toArray());
                    } else {
                        done.completeExceptionally(new AssertionError("finished by " + event.finish()));
                    }
                }
            }

            @Override
            public void onError(Throwable error) {
                done.completeExceptionally(error);
            }
        });
        return done;
    }

    /** The model, counting forwards whose placeholders stand for tokens not yet read back. */
    private static CausalLanguageModel watching(CausalLanguageModel real, AtomicInteger queuedAhead) {
        return new CausalLanguageModel() {
            @Override public ModelConfig config() { return real.config(); }
            @Override public String architecture() { return real.architecture(); }
            @Override public ComputeBackend backend() { return real.backend(); }
            @Override public int vocabSize() { return real.vocabSize(); }
            @Override public int hiddenSize() { return real.hiddenSize(); }
            @Override public long weightBytes() { return real.weightBytes(); }
            @Override public KvCacheSpec kvCacheSpec() { return real.kvCacheSpec(); }
            @Override public KvCache allocateKvCache(int numBlocks, int blockSize) { return real.allocateKvCache(numBlocks, blockSize); }
            @Override public boolean acceptsPendingTokens() { return real.acceptsPendingTokens(); }
            @Override public int maxBatchTokens() { return real.maxBatchTokens(); }
            @Override public void close() { }

            @Override
            public ForwardResult forward(ForwardBatch batch, KvCache cache) {
                if (batch.pendingTokens() instanceof TokenReadbacks.Pending p && !p.isRead()
                        && Arrays.stream(batch.tokens()).anyMatch(t -> t < 0)) {
                    queuedAhead.incrementAndGet();
                }
                return real.forward(batch, cache);
            }
        };
    }
}
