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
 * Dense matmul throughput of the CPU backend.
 *
 * <p>{@code gemv}: one activation row (decode), cycling through about 1 GiB of memory-mapped weights so that
 * every weight comes from main memory as in a real decode step; its {@code weightBytes} counter is the achieved
 * read bandwidth in bytes per second. {@code gemm}: many activation rows (prefill); its {@code flops} counter is
 * the achieved arithmetic rate.
 *
 * <p>Run: {@code ./mvnw -Pbench -pl bundles/backend-cpu test-compile exec:exec -Djmh.args="MatmulBenchmark"}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(1)
public class MatmulBenchmark {
    /** Weight shape, rows x columns (output x input features). */
    @Param({"1536x1536", "8960x1536", "1536x8960"})
    public String shape;

    @Param({"BF16"})
    public DType dtype;

    @Param({"2"})
    public int threads;

    /** Activation rows of the GEMM benchmark. */
    @Param({"512"})
    public int tokens;

    private CpuBackend backend;
    private MappedWeights mapped;
    private Weight[] weights;
    private Tensor x1;
    private Tensor out1;
    private Tensor xMany;
    private Tensor outMany;
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
        x1 = backend.allocate(DType.F32, 1, columns);
        out1 = backend.allocate(DType.F32, 1, rows);
        xMany = backend.allocate(DType.F32, tokens, columns);
        outMany = backend.allocate(DType.F32, tokens, rows);
        float[] values = new float[tokens * columns];
        for (int i = 0; i < values.length; i++) values[i] = (float) random.nextDouble(-1, 1);
        backend.write(values, xMany);
        backend.write(java.util.Arrays.copyOf(values, columns), x1);
    }

    @TearDown(Level.Trial)
    public void tearDown() throws IOException {
        backend.shutdown();
        mapped.close();
    }

    /** One decode-style matmul on the next weight copy. */
    @Benchmark
    public void gemv(Work work) {
        Weight w = weights[next];
        next = next + 1 == weights.length ? 0 : next + 1;
        w.multiply(x1, out1);
        work.weightBytes += w.bytes();
        work.flops += 2L * w.rows() * w.columns();
    }

    /** One prefill-style matmul of {@code tokens} rows. */
    @Benchmark
    public void gemm(Work work) {
        Weight w = weights[0];
        w.multiply(xMany, outMany);
        work.flops += 2L * tokens * w.rows() * w.columns();
    }
}
