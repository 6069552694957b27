package dev.kiln.backend.cuda;

import static dev.kiln.backend.cuda.testing.Fixtures.BLOCK_SIZE;
import static dev.kiln.backend.cuda.testing.Fixtures.blocks;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.backend.cuda.internal.KernelCompiler;
import dev.kiln.backend.cuda.testing.Fixtures;
import dev.kiln.backend.cuda.testing.Gpu;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A second thread using the same device context while decode steps replay as CUDA graphs, as a draft model loading
 * in the background does beside the engine: it uploads a model's weights (synchronous copies after waiting for the
 * stream), zeroes a KV cache on the stream, runs a prefill and reads its logits (which waits for the stream and may
 * rewind the upload ring), and frees it all. The decoding thread's greedy tokens must be those of the same decode
 * run alone, and its logits equal to them but for the order of sums (the other thread's flushes may issue a step's
 * launches before a fusion joins them); the other thread must finish its rounds without a device error.
 */
class CudaConcurrentUseTest {
    private static final String FIXTURE = "qwen2-tiny";
    private static final int STEPS = 40;
    private static final int SEQUENCES = 3;
    private static final int NUM_BLOCKS = 200;
    /** Relative to the step's largest logit. */
    private static final double RELATIVE_TOLERANCE = 1e-4;
    /** Rounds of the other thread that must overlap the decoding; the decode repeats until they have. */
    private static final int OVERLAPPING_ROUNDS = 3;

    private static CudaBackend backend;

    @BeforeAll
    static void start() {
        Gpu.backend(); // skips without a device
        backend = new CudaBackend(0, KernelCompiler.defaultCacheDirectory(), true);
    }

    @AfterAll
    static void stop() {
        if (backend != null) backend.shutdown();
    }

    @Test
    void decodeStepsKeepTheirLogitsWhileAnotherThreadLoadsRunsAndFreesAModel() throws InterruptedException {
        try (CausalLanguageModel model = Fixtures.build(FIXTURE, backend, Gpu.attention(), 256);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            List<float[]> alone = decode(model, cache);
            long replaysBefore = backend.launchStats().graphReplays();

            AtomicBoolean stop = new AtomicBoolean();
            AtomicInteger rounds = new AtomicInteger();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Thread other = Thread.ofPlatform().name("other-model").start(() -> {
                int[] prompt = Fixtures.ints(FIXTURE, "input_ids_0");
                try {
                    while (!stop.get()) {
                        try (CausalLanguageModel second = Fixtures.build(FIXTURE, backend, Gpu.attention(), 256);
                             KvCache secondCache = second.allocateKvCache(16, BLOCK_SIZE)) {
                            Fixtures.Batch prefill = new Fixtures.Batch();
                            prefill.add(blocks(0, 16), 0, prompt);
                            float[] logits = backend.read(second.forward(prefill.build(), secondCache).logits());
                            assertTrue(Arrays.stream(toDoubles(logits)).allMatch(Double::isFinite), "the other model's logits");
                        }
                        rounds.incrementAndGet();
                    }
                } catch (Throwable t) {
                    failure.set(t);
                }
            });

            int decodes = 0;
            try {
                int roundsAtStart;
                do {
                    roundsAtStart = rounds.get();
                    List<float[]> together = decode(model, cache);
                    decodes++;
                    compare(alone, together, decodes);
                } while ((rounds.get() - roundsAtStart < 1 || rounds.get() < OVERLAPPING_ROUNDS) && decodes < 200
                        && failure.get() == null);
            } finally {
                stop.set(true);
                other.join();
            }
            assertNull(failure.get(), () -> "the other thread failed: " + failure.get());
            System.out.printf("%d decodes of %d steps beside %d rounds of another model; %d graph replays%n", decodes,
                    STEPS, rounds.get(), backend.launchStats().graphReplays() - replaysBefore);
            assertTrue(rounds.get() >= OVERLAPPING_ROUNDS, "only " + rounds.get() + " rounds of the other thread");
            assertTrue(backend.launchStats().graphsEnabled(), "graph capture failed and was turned off");
        }
    }

    private static void compare(List<float[]> alone, List<float[]> together, int decode) {
        assertEquals(alone.size(), together.size());
        int vocab = alone.get(0).length / SEQUENCES;
        for (int step = 0; step < alone.size(); step++) {
            float[] a = alone.get(step), b = together.get(step);
            double scale = 0, worst = 0;
            for (float v : a) scale = Math.max(scale, Math.abs(v));
            for (int i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
            assertTrue(worst <= RELATIVE_TOLERANCE * scale, "decode " + decode + ", step " + step + ": logits differ by "
                    + worst + " (largest " + scale + ")");
            for (int s = 0; s < SEQUENCES; s++) {
                assertEquals(Fixtures.argmax(Fixtures.rows(a, vocab, s, s + 1)), Fixtures.argmax(Fixtures.rows(b, vocab, s, s + 1)),
                        "decode " + decode + ", step " + step + ", sequence " + s);
            }
        }
    }

    /** Prefills three prompts of different lengths, then decodes them together greedily; the logits of every step. */
    private static List<float[]> decode(CausalLanguageModel model, KvCache cache) {
        int[] prompt = Fixtures.ints(FIXTURE, "input_ids_0");
        return Fixtures.greedyDecode(backend, model, cache, prompt, SEQUENCES, NUM_BLOCKS, STEPS, SEQUENCES,
                s -> Math.max(1, prompt.length - 3 * s % prompt.length));
    }

    private static double[] toDoubles(float[] values) {
        double[] d = new double[values.length];
        for (int i = 0; i < values.length; i++) d[i] = values[i];
        return d;
    }
}
