package dev.kiln.backend.cuda;

import static dev.kiln.backend.cuda.testing.Fixtures.BLOCK_SIZE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.backend.cuda.internal.KernelCompiler;
import dev.kiln.backend.cuda.internal.StepRecorder;
import dev.kiln.backend.cuda.testing.Fixtures;
import dev.kiln.backend.cuda.testing.Gpu;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Decode steps replayed as CUDA graphs compute exactly what the same launches issued one by one compute: a
 * backend with graphs and one without run the same batched greedy decode, and every step's logits must be equal
 * bit for bit (the kernels are the same, only how they reach the GPU differs). The replaying backend must actually
 * have replayed graphs and fused launches, or the comparison would prove nothing.
 */
class CudaGraphReplayTest {
    private static final int STEPS = 40;
    private static final int NUM_BLOCKS = 200;

    private static CudaBackend withGraphs;
    private static CudaBackend oneByOne;

    @BeforeAll
    static void start() {
        Gpu.backend(); // skips without a device
        withGraphs = new CudaBackend(0, KernelCompiler.defaultCacheDirectory(), true);
        oneByOne = new CudaBackend(0, KernelCompiler.defaultCacheDirectory(), false);
    }

    @AfterAll
    static void stop() {
        if (withGraphs != null) withGraphs.shutdown();
        if (oneByOne != null) oneByOne.shutdown();
    }

    /**
     * 3 sequences take the GEMV kernels; 12 the paired cuBLAS GEMM, whose calls split the step into chunks. The
     * DeepSeek fixture routes its experts on the device, so its decode steps replay as graphs too.
     */
    @ParameterizedTest
    @CsvSource({"qwen2-tiny, 1", "qwen2-tiny, 3", "qwen2-tiny, 12", "deepseek-v3-tiny, 1", "deepseek-v3-tiny, 3",
            "deepseek-v2-lite-tiny, 12"})
    void graphReplayGivesBitwiseTheLogitsOfLaunchingOneByOne(String fixture, int sequences) {
        StepRecorder.Stats before = withGraphs.launchStats();
        List<float[]> replayed = decode(withGraphs, fixture, sequences);
        StepRecorder.Stats after = withGraphs.launchStats();
        List<float[]> plain = decode(oneByOne, fixture, sequences);
        assertEquals(plain.size(), replayed.size());
        for (int s = 0; s < plain.size(); s++) {
            assertArrayEquals(plain.get(s), replayed.get(s), "step " + s + " of " + sequences + " sequences");
        }
        long replays = after.graphReplays() - before.graphReplays();
        long replayedNodes = after.nodesReplayed() - before.nodesReplayed();
        long oneByOneNodes = after.nodesLaunchedOneByOne() - before.nodesLaunchedOneByOne();
        System.out.printf("%s, %d sequences x %d decode steps: %d graph replays (%d nodes), %d nodes launched one by one, "
                        + "%d graphs captured, %d fusions so far%n", fixture, sequences, STEPS, replays, replayedNodes, oneByOneNodes,
                after.graphsCaptured() - before.graphsCaptured(), after.fusions());
        assertTrue(after.graphsEnabled(), "graph capture failed and was turned off");
        assertTrue(replays >= STEPS / 2, "only " + replays + " graph replays in " + STEPS + " steps");
        if (sequences <= 8) { // GEMV steps have no cuBLAS call to cut them into short chunks
            assertTrue(replayedNodes > oneByOneNodes, "most nodes should run inside graphs: " + replayedNodes + " vs " + oneByOneNodes);
        }
        assertTrue(after.fusions() > 0, "no launch was fused");
        assertEquals(0, oneByOne.launchStats().graphReplays(), "the backend without graphs replayed one");
    }

    /** Prefills sequences of different lengths, then decodes them together greedily; the logits of every step. */
    private static List<float[]> decode(CudaBackend backend, String fixture, int sequences) {
        int[] prompt = Fixtures.ints(fixture, "input_ids_0");
        try (CausalLanguageModel model = Fixtures.build(fixture, backend, Gpu.attention(), 256);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            return Fixtures.greedyDecode(backend, model, cache, prompt, sequences, NUM_BLOCKS, STEPS, sequences,
                    s -> Math.max(1, prompt.length - 3 * s % prompt.length));
        }
    }
}
