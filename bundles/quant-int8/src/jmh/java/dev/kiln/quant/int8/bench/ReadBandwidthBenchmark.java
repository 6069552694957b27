package dev.kiln.quant.int8.bench;

import dev.kiln.backend.cpu.CpuBackend;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;
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
 * The read bandwidth the GEMV figures are bounded by, measured in the same sitting: the backend's threads sum 1 GiB
 * with the widest int vectors and nothing else. The machines are shared, so a kernel's GB/s means something only next
 * to this figure.
 *
 * <p>Run: {@code ./mvnw -Pbench -f bundles/quant-int8/pom.xml test-compile exec:exec -Djmh.args="ReadBandwidthBenchmark"}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class ReadBandwidthBenchmark {
    private static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED;
    private static final long BYTES = 1L << 30;

    @Param({"2"})
    public int threads;

    private CpuBackend backend;
    private Arena arena;
    private MemorySegment data;
    private final LongAdder sink = new LongAdder();

    /** Bytes read, reported per second by JMH. */
    @State(Scope.Thread)
    @AuxCounters(AuxCounters.Type.OPERATIONS)
    public static class Work {
        public long bytes;

        @Setup(Level.Iteration)
        public void reset() {
            bytes = 0;
        }
    }

    @Setup(Level.Trial)
    public void setUp() {
        backend = new CpuBackend(threads);
        arena = Arena.ofShared();
        data = arena.allocate(BYTES, 64);
        for (long i = 0; i < BYTES; i += 8) data.set(ValueLayout.JAVA_LONG_UNALIGNED, i, i);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        backend.shutdown();
        arena.close();
    }

    /** Reads the whole buffer once, split over the backend's threads in chunks of 1 MiB. */
    @Benchmark
    public void read(Work work) {
        int chunks = (int) (BYTES >> 20);
        backend.pool().parallelFor(chunks, 1, (worker, from, to) -> {
            IntVector acc = IntVector.zero(I);
            for (long o = (long) from << 20, end = (long) to << 20; o < end; o += I.vectorByteSize()) {
                acc = acc.add(IntVector.fromMemorySegment(I, data, o, ByteOrder.LITTLE_ENDIAN));
            }
            sink.add(acc.reduceLanes(VectorOperators.ADD));
        });
        work.bytes += BYTES;
    }
}
