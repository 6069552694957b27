package dev.kiln.attention.paged.bench;

import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.attention.paged.PagedAttention;
import dev.kiln.backend.cpu.CpuBackend;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
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
 * One layer of paged attention: a prefill of {@code queries} tokens at the end of a context of {@code context}
 * tokens, or a decode step ({@code queries = 1}), for the head geometry of a real model.
 *
 * <p>Run: {@code ./mvnw -Pbench -pl bundles/attention-paged test-compile exec:exec -Djmh.args="AttentionBenchmark"}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(1)
public class AttentionBenchmark {
    /** heads/kvHeads/keyDim/valueDim/mla: Qwen2-1.5B-like GQA, or a DeepSeek-V2-Lite-like MLA latent. */
    @Param({"12/2/128/128/false", "16/1/576/512/true"})
    public String geometry;

    /** queries/context. */
    @Param({"512/512", "1/1024", "1/4096"})
    public String shape;

    @Param({"2"})
    public int threads;

    private CpuBackend backend;
    private final PagedAttention kernel = new PagedAttention();
    private KvCache cache;
    private Tensor query;
    private Tensor key;
    private Tensor value;
    private Tensor out;
    private AttentionMetadata batch;
    private float scale;

    @Setup(Level.Trial)
    public void setUp() {
        String[] g = geometry.split("/");
        int heads = Integer.parseInt(g[0]), kvHeads = Integer.parseInt(g[1]);
        int keyDim = Integer.parseInt(g[2]), valueDim = Integer.parseInt(g[3]);
        boolean mla = Boolean.parseBoolean(g[4]);
        String[] s = shape.split("/");
        int queries = Integer.parseInt(s[0]), context = Integer.parseInt(s[1]);
        int blockSize = 16;
        int blocks = (context + blockSize - 1) / blockSize;
        backend = new CpuBackend(threads);
        cache = kernel.allocate(new KvCacheSpec(1, kvHeads, keyDim, valueDim, mla, DType.F32), blocks, blockSize, backend);
        SplittableRandom random = new SplittableRandom(3);
        query = filled(random, queries, heads * keyDim);
        key = filled(random, queries, kvHeads * keyDim);
        value = mla ? null : filled(random, queries, kvHeads * valueDim);
        out = backend.allocate(DType.F32, queries, heads * valueDim);
        int[] table = new int[blocks];
        for (int i = 0; i < blocks; i++) table[i] = blocks - 1 - i; // not in order, as after a while of serving
        int[] slots = new int[queries];
        for (int j = 0; j < queries; j++) {
            int p = context - queries + j;
            slots[j] = table[p / blockSize] * blockSize + p % blockSize;
        }
        batch = new AttentionMetadata(new int[] {0, queries}, new int[] {context}, new int[][] {table}, slots);
        scale = (float) (1 / Math.sqrt(keyDim));
    }

    private Tensor filled(SplittableRandom random, int rows, int columns) {
        float[] values = new float[rows * columns];
        for (int i = 0; i < values.length; i++) values[i] = (float) random.nextDouble(-1, 1);
        Tensor t = backend.allocate(DType.F32, rows, columns);
        backend.write(values, t);
        return t;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        cache.close();
        backend.shutdown();
    }

    /** One layer's forward: writes this step's keys and values, then attends. */
    @Benchmark
    public void forward() {
        kernel.forward(0, query, key, value, out, scale, cache, batch);
    }
}
