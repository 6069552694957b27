package dev.kiln.engine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.engine.testing.Collector;
import dev.kiln.engine.testing.DelegatingModel;
import dev.kiln.engine.testing.Fixtures;
import dev.kiln.sampler.DefaultSampler;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * On a backend that chooses tokens where the logits are (a GPU), the engine asks it for one column per row instead
 * of reading the logits whenever no request of the step needs them: greedy steps take argmaxRows, sampled steps
 * with a backend-compatible sampler take sampleRows, and a request that wants log-probabilities brings the logits
 * back. The backend here is the CPU one behind a proxy that claims device choice and counts the calls, so the API's
 * host definitions of argmaxRows and sampleRows do the work.
 */
class DeviceChoiceTest {
    private static final String FIXTURE = "qwen2-tiny";

    /** The counted calls of the proxy backend. */
    private final Map<String, AtomicInteger> calls = new ConcurrentHashMap<>();

    @Test
    void greedySampledAndLogprobRequestsTakeTheirPaths() throws Exception {
        int[] prompt = Fixtures.prompt(FIXTURE, 0);
        int[] expected = Fixtures.greedyContinuation(FIXTURE, 0);
        CausalLanguageModel real = Fixtures.build(FIXTURE, 256);
        try (CausalLanguageModel model = choosingOnDevice(real);
             InferenceEngineCore core = new InferenceEngineCore(model, EngineSettings.defaults().withKvCacheMemory(16L << 20),
                     new DefaultSampler(), List.of())) {
            // Greedy: the reference continuation, and no logits read.
            Collector greedy = submit(core, ConcurrentGreedyTest.greedy("greedy", prompt, expected.length));
            assertArrayEquals(expected, greedy.await().tokens());
            assertTrue(count("argmaxRows") >= expected.length, "argmaxRows calls: " + count("argmaxRows"));
            assertEquals(0, count("read"), "a greedy request read logits");
            assertEquals(0, count("sampleRows"));

            // Sampled with temperature, top-k and top-p: drawn by the backend; a seed reproduces the tokens.
            var params = new SamplingParams(0.8, 0.95, 40, 0, 0, 0, 1, 7L, 0);
            int[] first = submit(core, new GenerationRequest("s1", prompt, params, 16, 0, null, true, -1, null)).await().tokens();
            int[] second = submit(core, new GenerationRequest("s2", prompt, params, 16, 0, null, true, -1, null)).await().tokens();
            assertEquals(16, first.length);
            assertArrayEquals(first, second, "the same seed drew different tokens");
            assertTrue(count("sampleRows") >= 32, "sampleRows calls: " + count("sampleRows"));
            assertEquals(0, count("read"), "a sampled request without log-probabilities read logits");

            // Log-probabilities need the logits themselves.
            var withLogprobs = new SamplingParams(0, 1, 0, 0, 0, 0, 1, null, 2);
            Collector lp = submit(core, new GenerationRequest("lp", prompt, withLogprobs, 4, 0, null, true, -1, null)).await();
            assertArrayEquals(java.util.Arrays.copyOf(expected, 4), lp.tokens());
            assertNotNull(lp.events().get(0).logprobs());
            assertTrue(count("read") >= 4, "log-probabilities came without reading logits");
        }
    }

    private static Collector submit(InferenceEngineCore core, GenerationRequest request) {
        Collector c = new Collector();
        core.submit(request, c);
        return c;
    }

    private int count(String method) {
        return calls.getOrDefault(method, new AtomicInteger()).get();
    }

    /** The model with a backend that claims to choose tokens on the device and counts what the engine calls. */
    private CausalLanguageModel choosingOnDevice(CausalLanguageModel real) {
        return new DelegatingModel(real, (method, args) -> {
            if (method.getName().equals("choosesTokensOnDevice")) return true;
            calls.computeIfAbsent(method.getName(), k -> new AtomicInteger()).incrementAndGet();
            return DelegatingModel.DELEGATE;
        });
    }
}
