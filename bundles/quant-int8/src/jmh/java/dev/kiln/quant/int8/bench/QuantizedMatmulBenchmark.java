package dev.kiln.quant.int8.bench;

import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.quant.cpu.Int4GroupWeight;
import dev.kiln.quant.cpu.KernelScratch;
import dev.kiln.quant.int8.internal.Int8ChannelWeight;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
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
 * Matmul throughput of the integer weight formats against bf16 on the CPU backend, for the matrix shapes of
 * DeepSeek-R1-Distill-Qwen-1.5B.
 *
 * <p>{@code gemv}: one activation row (decode), cycling through about 1 GiB of stored weights so that every weight
 * comes from main memory, as in a decode step; its {@code weightBytes} counter is the rate at which stored weight
 * bytes (codes and scales) are consumed, its {@code weights} counter the rate in weights. {@code gemm}: 512 rows
 * (prefill); its {@code flops} counter is the arithmetic rate. Formats: {@code bf16} (the backend's dense kernel),
 * {@code int8} (weight_only_int8), {@code int4-g128} / {@code int4-g64} (weight_only_int4), {@code int4-g128-a8} (its
 * decode kernel with 8-bit activations) and {@code awq-g128} (the INT4 kernel with zero points), all with random
 * codes.
 *
 * <p>Run: {@code ./mvnw -Pbench -f bundles/quant-int8/pom.xml test-compile exec:exec -Djmh.args="QuantizedMatmulBenchmark"}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(1)
public class QuantizedMatmulBenchmark {
    private static final long TOTAL_BYTES = 1L << 30;

    /** Weight shape, rows x columns (output x input features). */
    @Param({"1536x1536", "8960x1536", "1536x8960"})
    public String shape;

    @Param({"bf16", "int8", "int4-g128", "int4-g128-a8", "int4-g64", "awq-g128"})
    public String format;

    @Param({"2"})
    public int threads;

    /** Activation rows of the GEMM benchmark. */
    @Param({"512"})
    public int tokens;

    private CpuBackend backend;
    private Arena arena;
    private Weight[] weights;
    private Tensor x1;
    private Tensor out1;
    private Tensor xMany;
    private Tensor outMany;
    private int next;

    /** Bytes, weights and floating-point operations done, reported per second by JMH. */
    @State(Scope.Thread)
    @AuxCounters(AuxCounters.Type.OPERATIONS)
    public static class Work {
        public long weightBytes;
        public long weights;
        public long flops;

        @Setup(Level.Iteration)
        public void reset() {
            weightBytes = 0;
            weights = 0;
            flops = 0;
        }
    }

    @Setup(Level.Trial)
    public void setUp() {
        String[] dims = shape.split("x");
        int rows = Integer.parseInt(dims[0]);
        int columns = Integer.parseInt(dims[1]);
        backend = new CpuBackend(threads);
        arena = Arena.ofShared();
        SplittableRandom random = new SplittableRandom(42);
        List<Weight> made = new ArrayList<>();
        long total = 0;
        while (total < TOTAL_BYTES) {
            Weight w = make(rows, columns, random);
            made.add(w);
            total += w.bytes();
        }
        weights = made.toArray(Weight[]::new);
        x1 = backend.allocate(DType.F32, 1, columns);
        out1 = backend.allocate(DType.F32, 1, rows);
        xMany = backend.allocate(DType.F32, tokens, columns);
        outMany = backend.allocate(DType.F32, tokens, rows);
        float[] values = new float[tokens * columns];
        for (int i = 0; i < values.length; i++) values[i] = (float) random.nextDouble(-1, 1);
        backend.write(values, xMany);
        backend.write(java.util.Arrays.copyOf(values, columns), x1);
    }

    private Weight make(int rows, int columns, SplittableRandom random) {
        KernelScratch scratch = KernelScratch.of(backend.pool());
        return switch (format) {
            case "bf16" -> {
                MemorySegment data = arena.allocate(2L * rows * columns, 64);
                ValueLayout.OfShort s = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
                for (long i = 0; i < (long) rows * columns; i++) {
                    data.setAtIndex(s, i, (short) (Float.floatToRawIntBits((float) (random.nextDouble() - 0.5) * 0.1f) >>> 16));
                }
                yield backend.denseWeight(new CheckpointTensor("w", DType.BF16, new long[] {rows, columns}, data, Path.of("bench")));
            }
            case "int8" -> {
                int depth = Int8ChannelWeight.paddedColumns(columns);
                MemorySegment codes = arena.allocate((long) rows * depth, 64);
                for (long i = 0; i < codes.byteSize(); i += 8) codes.set(ValueLayout.JAVA_LONG_UNALIGNED, i, random.nextLong());
                float[] scales = new float[rows];
                for (int r = 0; r < rows; r++) scales[r] = (float) random.nextDouble(1e-4, 1e-3);
                yield new Int8ChannelWeight(codes, scales, rows, columns, depth, backend.pool(), scratch, null);
            }
            case "int4-g128", "int4-g128-a8", "int4-g64", "awq-g128" -> {
                int group = format.endsWith("g64") ? 64 : 128;
                boolean zeroPoints = format.startsWith("awq");
                var builder = new Int4GroupWeight.Builder(rows, columns, group, zeroPoints);
                byte[] codes = new byte[columns];
                float[] scales = new float[builder.groups()];
                byte[] zeros = zeroPoints ? new byte[builder.groups()] : null;
                for (int r = 0; r < rows; r++) {
                    for (int c = 0; c < columns; c++) codes[c] = (byte) random.nextInt(16);
                    for (int g = 0; g < scales.length; g++) {
                        scales[g] = (float) random.nextDouble(1e-3, 1e-2);
                        if (zeroPoints) zeros[g] = (byte) random.nextInt(16);
                    }
                    builder.setRow(r, codes, scales, zeros);
                }
                yield builder.build(format, backend.pool(), scratch, format.endsWith("-a8"));
            }
            default -> throw new IllegalArgumentException("unknown format " + format);
        };
    }

    @TearDown(Level.Trial)
    public void tearDown() throws Exception {
        for (Weight w : weights) w.close();
        backend.shutdown();
        arena.close();
    }

    /** One decode-style matmul on the next weight copy. */
    @Benchmark
    public void gemv(Work work) {
        Weight w = weights[next];
        next = next + 1 == weights.length ? 0 : next + 1;
        w.multiply(x1, out1);
        work.weightBytes += w.bytes();
        work.weights += (long) w.rows() * w.columns();
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
