package dev.kiln.models.deepseek;

import static dev.kiln.models.testing.Harness.BLOCK_SIZE;
import static dev.kiln.models.testing.Harness.maxAbsDiff;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.ExpertRouting;
import dev.kiln.api.backend.RoutedExperts;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.models.testing.Batches;
import dev.kiln.models.testing.BlockPool;
import dev.kiln.models.testing.Harness;
import dev.kiln.models.testing.Reference;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * A backend that offers its own routed experts gets every mixture-of-experts layer's routed part, with the layer's
 * normed input, router logits and residual, and the model's logits stay those of host routing; the model releases
 * what the backend made when it closes. The backend here is the CPU one seen through a proxy whose routed experts
 * compute in double precision from the weights' values (on a GPU the same calls run on the device).
 */
class RoutedExpertsPathTest {
    private static final int NUM_BLOCKS = 16;

    /** Routed experts computed on the host, counting calls. */
    private static final class HostExperts implements RoutedExperts {
        final ComputeBackend cpu;
        final ExpertRouting routing;
        final float[][] gate, up, down;
        final int capacity, hidden, width;
        int calls;
        boolean closed;

        HostExperts(ComputeBackend cpu, ExpertRouting routing, Weight[] gate, Weight[] up, Weight[] down, int capacity) {
            this.cpu = cpu;
            this.routing = routing;
            this.capacity = capacity;
            this.hidden = gate[0].columns();
            this.width = gate[0].rows();
            this.gate = values(gate);
            this.up = values(up);
            this.down = values(down);
        }

        /** Each weight's values: its product with the identity. */
        private float[][] values(Weight[] weights) {
            float[][] out = new float[weights.length][];
            for (int e = 0; e < weights.length; e++) {
                int rows = weights[e].rows(), columns = weights[e].columns();
                try (Tensor identity = cpu.allocate(dev.kiln.api.tensor.DType.F32, columns, columns);
                     Tensor product = cpu.allocate(dev.kiln.api.tensor.DType.F32, columns, rows)) {
                    float[] eye = new float[columns * columns];
                    for (int i = 0; i < columns; i++) eye[i * columns + i] = 1;
                    cpu.write(eye, identity);
                    weights[e].multiply(identity, product);
                    float[] t = cpu.read(product); // [column][row]
                    out[e] = new float[rows * columns];
                    for (int c = 0; c < columns; c++) for (int r = 0; r < rows; r++) out[e][r * columns + c] = t[c * rows + r];
                }
            }
            return out;
        }

        @Override
        public int capacity() {
            return capacity;
        }

        @Override
        public void addTo(Tensor normed, Tensor routerLogits, int routedTokens, Tensor residual) {
            calls++;
            float[] x = cpu.read(normed);
            float[] acc = cpu.read(residual);
            ExpertRouting.Assignment a = routing.route(cpu.read(routerLogits), routedTokens);
            double[] h = new double[width];
            for (int e = 0; e < gate.length; e++) {
                for (int k = 0; k < a.tokens()[e].length; k++) {
                    int t = a.tokens()[e][k];
                    for (int r = 0; r < width; r++) {
                        double g = 0, u = 0;
                        for (int c = 0; c < hidden; c++) {
                            g += (double) gate[e][r * hidden + c] * x[t * hidden + c];
                            u += (double) up[e][r * hidden + c] * x[t * hidden + c];
                        }
                        h[r] = g / (1 + Math.exp(-g)) * u;
                    }
                    for (int r = 0; r < hidden; r++) {
                        double y = 0;
                        for (int c = 0; c < width; c++) y += down[e][r * width + c] * h[c];
                        acc[t * hidden + r] += (float) (a.weights()[e][k] * y);
                    }
                }
            }
            cpu.write(acc, residual);
        }

        @Override
        public void close() {
            closed = true;
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"deepseek-v2-lite-tiny", "deepseek-v3-tiny"})
    void theBackendsRoutedExpertsServeEveryMoeLayerWithTheHostRoutingsLogits(String fixture) {
        ComputeBackend cpu = Harness.backend();
        List<HostExperts> made = new ArrayList<>();
        ComputeBackend offering = (ComputeBackend) Proxy.newProxyInstance(ComputeBackend.class.getClassLoader(),
                new Class<?>[] {ComputeBackend.class}, (self, method, args) -> {
                    if (method.getName().equals("routedExperts")) {
                        var experts = new HostExperts(cpu, (ExpertRouting) args[0], (Weight[]) args[1],
                                (Weight[]) args[2], (Weight[]) args[3], (int) args[4]);
                        made.add(experts);
                        return experts;
                    }
                    try {
                        return method.invoke(cpu, args);
                    } catch (InvocationTargetException e) {
                        throw e.getCause();
                    }
                });
        int[] prompt = Reference.of(Harness.fixture(fixture)).prompt(0);
        float[] expected;
        try (CausalLanguageModel model = Harness.build(fixture, 64)) {
            expected = promptLogits(cpu, model, prompt);
        }
        float[] actual;
        try (CausalLanguageModel model = Harness.buildOnProxy(Harness.open(fixture), offering, 64)) {
            assertTrue(made.size() >= 2, "one routed-experts path per MoE layer, got " + made.size());
            for (HostExperts e : made) assertEquals(64, e.capacity());
            actual = promptLogits(cpu, model, prompt);
        }
        for (HostExperts e : made) {
            assertTrue(e.closed, "the model must release what the backend made");
        }
        assertTrue(made.stream().filter(e -> e.calls > 0).count() >= 2, "the MoE layers of the main model ran on the path");
        double diff = maxAbsDiff(actual, expected);
        assertTrue(diff < 1e-3, fixture + ": logits moved by " + diff);
    }

    private static float[] promptLogits(ComputeBackend backend, CausalLanguageModel model, int[] prompt) {
        try (KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            var batch = new Batches(BLOCK_SIZE).addEveryLogit(new BlockPool(NUM_BLOCKS, 1).forTokens(prompt.length,
                    BLOCK_SIZE), 0, prompt).build(false);
            return backend.read(model.forward(batch, cache).logits());
        }
    }
}
