package dev.kiln.backend.cpu.bench;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cpu.CpuBackend;
import java.io.IOException;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.AuxCounters;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Batched decode: one activation row per running sequence against weights that come from main memory, as in
 * a continuous-batching decode step. The score is matmuls per second (its inverse is the time of one step's
 * matmul, to read against the single-row time); {@code weightBytes} is the achieved read bandwidth and
 * {@code flops} the arithmetic rate, both per second.
 *
 * <p>Run: {@code ./mvnw -Pbench -pl bundles/backend-cpu test-compile exec:exec -Djmh.args="BatchedDecodeBenchmark"}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(1)
public class BatchedDecodeBenchmark {
    /** Weight shape, rows x columns (output x input features). */
    @Param({"1536x1536", "8960x1536"})
    public String shape;

    /** Activation rows: sequences decoded together. */
    @Param({"1", "2", "4", "8", "16", "32"})
    public int batch;

    @Param({"BF16"})
    public DType dtype;

    @Param({"2"})
    public int threads;

    private CpuBackend backend;
    private MappedWeights mapped;
    private Weight[] weights;
    private Tensor x;
    private Tensor out;
    private int next;

    /** Bytes and floating-point operations done, reported per second by JMH. */
    @State(Scope.Thread)
    @AuxCounters(AuxCounters.Type.OPERATIONS)
    public static class Work {
        public long weightBytes;
        public long flops;

        @Setup(Level.Iteration)
        public void reset() {
            weightBytes = 0;
            flops = 0;
        }
    }

    @Setup(Level.Trial)
    public void setUp() throws IOException {
        String[] dims = shape.split("x");
        int rows = Integer.parseInt(dims[0]);
        int columns = Integer.parseInt(dims[1]);
        backend = new CpuBackend(threads);
        mapped = new MappedWeights(dtype, rows, columns, 1L << 30);
        weights = new Weight[mapped.tensors.length];
        for (int i = 0; i < weights.length; i++) weights[i] = backend.denseWeight(mapped.tensors[i]);
        SplittableRandom random = new SplittableRandom(1);
        x = backend.allocate(DType.F32, batch, columns);
        out = backend.allocate(DType.F32, batch, rows);
        float[] values = new float[batch * columns];
        for (int i = 0; i < values.length; i++) values[i] = (float) random.nextDouble(-1, 1);
        backend.write(values, x);
    }

    @TearDown(Level.Trial)
    public void tearDown() throws IOException {
        backend.shutdown();
        mapped.close();
    }

    /** One matmul of {@code batch} rows on the next weight copy. */
    @Benchmark
    public void multiply(Work work) {
        Weight w = weights[next];
        next = next + 1 == weights.length ? 0 : next + 1;
        w.multiply(x, out);
        work.weightBytes += w.bytes();
        work.flops += 2L * batch * w.rows() * w.columns();
    }
}
