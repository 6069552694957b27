package dev.kiln.backend.cuda;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.PendingTokens;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.api.tensor.DType;
import dev.kiln.backend.cuda.bindings.CudaDriver;
import dev.kiln.backend.cuda.internal.CudaContext;
import dev.kiln.backend.cuda.internal.KernelCompiler;
import dev.kiln.backend.cuda.internal.StepRecorder;
import dev.kiln.backend.cuda.testing.Fixtures;
import dev.kiln.models.runner.SequenceRunner;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/**
 * Greedy (or, with {@code -Dkiln.bench.sample}, sampled) decode on the device with the exact tensor shapes of DeepSeek-R1-Distill-Qwen-1.5B (random bf16 weights,
 * built in memory; {@code -Dkiln.bench.model=DIR} takes a checkpoint folder instead, e.g. a synthetic DeepSeek-V2-Lite;
 * {@code -Dkiln.bench.quantization=weight_only_int8|weight_only_int4|fp8} quantizes its linear layers on load, and the
 * bound then counts their quantized bytes),
 * at several batch sizes, with CUDA graphs off and on, against the HBM bound measured in the same
 * run: device-to-device copy bandwidth (bytes read plus written) over the weight bytes one decode step reads (every
 * matrix except the embedding table, of which one row is read). Timing includes everything a serving step does
 * outside the sampler: building the batch, the forward, and reading the logits back.
 *
 * <p>Run on a GPU machine: {@code java --enable-native-access=ALL-UNNAMED --add-modules jdk.incubator.vector -cp ...
 * dev.kiln.backend.cuda.DecodeBenchmark [promptTokens] [newTokens] [batch,batch,...]}.
 *
 * <p>{@code -Dkiln.bench.prefill=512,2048,...} first times the prefill of one prompt of each length into an empty
 * cache (the time to first token without queueing), in chunks of {@code -Dkiln.bench.prefillChunk} tokens (2048).
 */
public final class DecodeBenchmark {
    private static final int HIDDEN = 1536, INTERMEDIATE = 8960, LAYERS = 28, HEADS = 12, KV_HEADS = 2, VOCAB = 151936;
    private static final int BLOCK = Fixtures.BLOCK_SIZE;

    private DecodeBenchmark() {}

    public static void main(String[] args) {
        int prompt = args.length > 0 ? Integer.parseInt(args[0]) : 128;
        int generate = args.length > 1 ? Integer.parseInt(args[1]) : 256;
        int[] batches = args.length > 2 ? Arrays.stream(args[2].split(",")).mapToInt(Integer::parseInt).toArray() : new int[] {1};
        CudaAvailability availability = CudaAvailability.probe();
        if (!availability.available()) {
            System.out.println("no CUDA: " + availability.description());
            return;
        }
        // -Dkiln.bench.graphs=on (or off) runs one mode only.
        String modes = System.getProperty("kiln.bench.graphs", "off,on");
        // -Dkiln.bench.model=DIR decodes a checkpoint folder (`kiln synth --like deepseek-v2-lite`, say) instead.
        String modelFolder = System.getProperty("kiln.bench.model");
        // -Dkiln.bench.kvCacheDtype=bf16 decodes over a bf16 KV cache (default f32, the architecture's).
        DType cacheType = switch (System.getProperty("kiln.bench.kvCacheDtype", "f32")) {
            case "f32" -> DType.F32;
            case "bf16" -> DType.BF16;
            default -> throw new IllegalArgumentException("kiln.bench.kvCacheDtype must be f32 or bf16");
        };
        // -Dkiln.bench.quantization=weight_only_int8 (or weight_only_int4, fp8) quantizes the linear layers on load.
        String quantization = System.getProperty("kiln.bench.quantization", "");
        Quantizer quantizer = switch (quantization) {
            case "" -> null;
            case "weight_only_int8" -> new CudaInt8Quantizer();
            case "weight_only_int4" -> new CudaInt4Quantizer();
            case "fp8" -> new CudaFp8Quantizer();
            default -> throw new IllegalArgumentException("kiln.bench.quantization must be weight_only_int8, weight_only_int4 or fp8");
        };
        for (boolean graphs : new boolean[] {false, true}) {
            if (!modes.contains(graphs ? "on" : "off")) continue;
            try (CudaBackend backend = new CudaBackend(0, KernelCompiler.defaultCacheDirectory(), graphs)) {
                System.out.println("device: " + backend.device().description() + "; CUDA graphs " + (graphs ? "on" : "off")
                        + "; KV cache " + cacheType);
                double bandwidth = copyBandwidth(backend.context());
                System.out.printf("device-to-device copy: %.0f GB/s (read + write)%n", bandwidth / 1e9);
                long start = System.nanoTime();
                int maxBatch = Arrays.stream(batches).max().orElse(1);
                int longestPrefill = Arrays.stream(PREFILLS).max().orElse(0);
                int blocksPerSequence = (Math.max(prompt + generate, longestPrefill) + BLOCK) / BLOCK;
                Checkpoint checkpoint = modelFolder == null ? new SyntheticCheckpoint() : Fixtures.open(Path.of(modelFolder));
                // A tied table is also the output projection, read whole every step; else one row of it is read.
                long embeddingBytes = checkpoint.find("lm_head.weight").isEmpty() ? 0
                        : checkpoint.tensor("model.embed_tokens.weight").data().byteSize();
                int maxBatchTokens = Math.max(Math.max(256, maxBatch), PREFILLS.length == 0 ? 0 : PREFILL_CHUNK);
                try (CausalLanguageModel model = Fixtures.build(checkpoint, backend, new CudaPagedAttention(), quantizer,
                             maxBatchTokens, cacheType);
                     KvCache cache = model.allocateKvCache(blocksPerSequence * maxBatch, BLOCK)) {
                    System.out.printf("model %s%s on the device in %.1f s: %.2f GB of weights%n",
                            modelFolder == null ? "R1-Distill-Qwen-1.5B shape" : modelFolder,
                            quantizer == null ? "" : ", " + quantization, (System.nanoTime() - start) / 1e9,
                            model.weightBytes() / 1e9);
                    // Every weight once per token, but one row of the embedding table and only the chosen experts.
                    long perToken = model.weightBytesPerToken() - embeddingBytes;
                    double bound = bandwidth / perToken;
                    for (int length : PREFILLS) {
                        double[] seconds = new double[4]; // the first warms up
                        for (int round = 0; round < seconds.length; round++) seconds[round] = prefill(model, cache, length);
                        double best = Arrays.stream(seconds).skip(1).min().orElseThrow();
                        double median = Arrays.stream(seconds).skip(1).sorted().toArray()[(seconds.length - 1) / 2];
                        System.out.printf("prefill %d tokens (chunks of %d): median %.1f ms, best %.1f ms = %.0f tok/s%n",
                                length, Math.min(length, model.maxBatchTokens()), median * 1e3, best * 1e3, length / best);
                    }
                    for (int batch : batches) for (boolean overlap : OVERLAP) {
                        for (int round = 0; round < 2; round++) { // the first round warms up the JIT and the kernels
                            StepRecorder.Stats before = backend.launchStats();
                            // Profiling waits for every step's timing events, which would undo the overlap.
                            StepRecorder profiler = round == 1 && !overlap && Boolean.getBoolean("kiln.bench.profile")
                                    ? backend.context().recorder() : null;
                            double[] result = decode(model, cache, batch, prompt, generate, blocksPerSequence, profiler, overlap);
                            StepRecorder.Stats after = backend.launchStats();
                            if (round == 0) continue;
                            double median = result[1];
                            System.out.printf("batch %d%s, context %d..%d: %.1f tok/s overall, median step %.3f ms (host until "
                                            + "forward returns %.3f ms) = %.1f tok/s"
                                            + " (%.1f tok/s per sequence)%s; graph replays %d, one-by-one nodes %d, fusions %d%n",
                                    batch, overlap ? " overlapped" : "", prompt, prompt + generate, batch * generate / result[0], median * 1e3, result[2] * 1e3,
                                    batch / median, 1 / median,
                                    batch == 1 ? String.format("; HBM bound %.0f tok/s (%.3f GB/token) -> %.0f%% of it", bound,
                                            perToken / 1e9, 100 / median / bound) : "",
                                    after.graphReplays() - before.graphReplays(),
                                    after.nodesLaunchedOneByOne() - before.nodesLaunchedOneByOne(),
                                    after.fusions() - before.fusions());
                        }
                    }
                }
            }
        }
    }

    /**
     * {@code -Dkiln.bench.overlap=off,on} (the default; or one of them): whether each step is queued before the
     * tokens of the step ahead are read back, as the engine queues them on this backend (placeholders stand for the
     * pending tokens), or only after.
     */
    private static final boolean[] OVERLAP = overlapModes(System.getProperty("kiln.bench.overlap", "off,on"));

    private static boolean[] overlapModes(String value) {
        String[] parts = value.split(",");
        boolean[] modes = new boolean[parts.length];
        for (int i = 0; i < parts.length; i++) {
            modes[i] = switch (parts[i].trim()) {
                case "on" -> true;
                case "off" -> false;
                default -> throw new IllegalArgumentException("kiln.bench.overlap takes off, on or both: " + parts[i]);
            };
        }
        return modes;
    }

    private static final int[] PREFILLS = System.getProperty("kiln.bench.prefill", "").isBlank() ? new int[0]
            : Arrays.stream(System.getProperty("kiln.bench.prefill").split(",")).mapToInt(v -> Integer.parseInt(v.trim())).toArray();
    private static final int PREFILL_CHUNK = Integer.getInteger("kiln.bench.prefillChunk", 2048);

    /** Seconds to prefill one random prompt of {@code length} tokens into an empty cache, through its last logits read back. */
    private static double prefill(CausalLanguageModel model, KvCache cache, int length) {
        SplittableRandom random = new SplittableRandom(length);
        int[] table = IntStream.range(0, (length + BLOCK - 1) / BLOCK).toArray();
        int[] tokens = random.ints(length, 0, model.vocabSize()).toArray();
        long start = System.nanoTime();
        prefill(model, cache, table, tokens);
        return (System.nanoTime() - start) / 1e9;
    }

    /**
     * Prefills one sequence's prompt into an empty cache, in chunks of the model's batch limit (so that prompts longer
     * than one batch work); returns the last token's logits.
     */
    private static float[] prefill(CausalLanguageModel model, KvCache cache, int[] table, int[] tokens) {
        float[] logits = null;
        for (int from = 0; from < tokens.length; from += model.maxBatchTokens()) {
            int[] chunk = Arrays.copyOfRange(tokens, from, Math.min(tokens.length, from + model.maxBatchTokens()));
            logits = model.backend().read(model.forward(step(new int[][] {table}, new int[] {from}, new int[][] {chunk}),
                    cache).logits());
        }
        return logits;
    }

    /**
     * Prefills {@code batch} random prompts one by one, then decodes them together greedily for {@code generate}
     * steps, each queued before or after the tokens of the step ahead are read back; returns {total decode seconds,
     * median step seconds, median host seconds until the forward returns}.
     */
    private static double[] decode(CausalLanguageModel model, KvCache cache, int batch, int prompt, int generate,
                                   int blocksPerSequence, StepRecorder profiler, boolean overlap) {
        SplittableRandom random = new SplittableRandom(1);
        int[][] tables = new int[batch][];
        int[] lengths = new int[batch];
        int[] next = new int[batch];
        for (int s = 0; s < batch; s++) {
            int first = s * blocksPerSequence;
            tables[s] = IntStream.range(0, blocksPerSequence).map(i -> first + blocksPerSequence - 1 - i).toArray();
            int[] tokens = random.ints(prompt, 0, model.vocabSize()).toArray();
            next[s] = SequenceRunner.argmax(prefill(model, cache, tables[s], tokens));
            lengths[s] = prompt;
        }
        long[] steps = new long[generate];
        long[] recording = new long[generate];
        double[][] profile = new double[generate][];
        if (profiler != null) profiler.profile(true);
        PendingTokens ahead = null;
        for (int i = 0; i < generate; i++) {
            long t0 = System.nanoTime();
            int[][] tokens = new int[batch][];
            for (int s = 0; s < batch; s++) tokens[s] = new int[] {ahead == null ? next[s] : PendingTokens.placeholder(s)};
            // The choice on the device, as the engine makes it for greedy requests (or, with -Dkiln.bench.sample,
            // for sampled ones): one int per sequence comes back.
            var result = model.forward(step(tables, lengths, tokens, ahead), cache);
            long t1 = System.nanoTime();
            ComputeBackend backend = model.backend();
            if (overlap) {
                PendingTokens chosen = SAMPLING == null ? backend.argmaxRowsPending(result.logits())
                        : backend.sampleRowsPending(result.logits(), samplingParams(batch), uniforms(random, batch));
                if (ahead != null) ahead.await();
                ahead = chosen;
            } else {
                next = SAMPLING == null ? backend.argmaxRows(result.logits())
                        : backend.sampleRows(result.logits(), samplingParams(batch), uniforms(random, batch));
            }
            for (int s = 0; s < batch; s++) lengths[s]++;
            steps[i] = System.nanoTime() - t0;
            recording[i] = t1 - t0;
            if (profiler != null) profile[i] = summarize(profiler.takeProfile());
        }
        if (ahead != null) ahead.await();
        if (profiler != null) {
            profiler.profile(false);
            printProfile(profile, steps);
        }
        long[] sorted = steps.clone();
        Arrays.sort(sorted);
        Arrays.sort(recording);
        return new double[] {Arrays.stream(steps).sum() / 1e9, sorted[generate / 2] / 1e9, recording[generate / 2] / 1e9};
    }

    /**
     * {@code -Dkiln.bench.sample=T,topP[,topK[,minP]]}: every sequence samples with these settings through
     * {@code sampleRows} instead of taking the argmax (e.g. {@code 0.6,0.95}, DeepSeek-R1's recommended settings).
     */
    private static final float[] SAMPLING = System.getProperty("kiln.bench.sample") == null ? null
            : parseSampling(System.getProperty("kiln.bench.sample"));

    private static float[] parseSampling(String value) {
        String[] parts = value.split(",");
        float[] setting = {1f, 0f, 1f, 0f}; // temperature, top-k, top-p, min-p
        setting[0] = Float.parseFloat(parts[0]);
        if (parts.length > 1) setting[2] = Float.parseFloat(parts[1]);
        if (parts.length > 2) setting[1] = Float.parseFloat(parts[2]);
        if (parts.length > 3) setting[3] = Float.parseFloat(parts[3]);
        return setting;
    }

    private static float[] samplingParams(int rows) {
        float[] params = new float[4 * rows];
        for (int r = 0; r < rows; r++) System.arraycopy(SAMPLING, 0, params, 4 * r, 4);
        return params;
    }

    private static double[] uniforms(SplittableRandom random, int rows) {
        double[] u = new double[rows];
        for (int r = 0; r < rows; r++) u[r] = random.nextDouble();
        return u;
    }

    /** {chunks, chunks replayed as graphs, GPU ms in chunks, idle ms between chunks, idle ms before the first}. */
    private static double[] summarize(List<StepRecorder.ChunkTiming> chunks) {
        double gpu = 0, idleBetween = 0;
        int replayed = 0;
        for (int c = 0; c < chunks.size(); c++) {
            StepRecorder.ChunkTiming t = chunks.get(c);
            gpu += t.gpuMillis();
            if (c > 0) idleBetween += t.idleBeforeMillis();
            if (t.replayed()) replayed++;
        }
        return new double[] {chunks.size(), replayed, gpu, idleBetween, chunks.isEmpty() ? 0 : chunks.getFirst().idleBeforeMillis()};
    }

    /** Where a step's time goes on the GPU, medians over the steps after the first. */
    private static void printProfile(double[][] profile, long[] steps) {
        String[] names = {"chunks", "replayed as graphs", "GPU ms in chunks", "GPU idle ms between chunks",
                "GPU idle ms between steps"};
        StringBuilder line = new StringBuilder("  profile (median of steps):");
        for (int k = 0; k < names.length; k++) {
            int key = k;
            double[] v = Arrays.stream(profile).skip(1).mapToDouble(p -> p[key]).sorted().toArray();
            line.append(String.format(" %s %.3f;", names[k], v[v.length / 2]));
        }
        long[] sorted = Arrays.stream(steps).skip(1).sorted().toArray();
        line.append(String.format(" host step %.3f ms", sorted[sorted.length / 2] / 1e6));
        System.out.println(line);
    }

    /** One forward step: each sequence's new tokens after its cached ones, the last token's logits wanted. */
    private static ForwardBatch step(int[][] tables, int[] cached, int[][] newTokens) {
        return step(tables, cached, newTokens, null);
    }

    /** The same, with placeholders among the tokens for these pending ones. */
    private static ForwardBatch step(int[][] tables, int[] cached, int[][] newTokens, PendingTokens pending) {
        Fixtures.Batch batch = new Fixtures.Batch();
        for (int s = 0; s < tables.length; s++) batch.add(tables[s], cached[s], newTokens[s]);
        return batch.build(pending);
    }

    /** Bytes read plus written per second by a 1 GiB device-to-device copy, median of 10. */
    private static double copyBandwidth(CudaContext context) {
        CudaDriver driver = context.driver();
        long bytes = 1L << 30;
        long a = context.allocate(bytes), b = context.allocate(bytes);
        MemorySegment start = driver.createEvent(CudaDriver.EVENT_DEFAULT), end = driver.createEvent(CudaDriver.EVENT_DEFAULT);
        try {
            context.onStream(stream -> driver.fill32Async(a, 0x3f800000, bytes / 4, stream));
            double[] rates = new double[10];
            for (int i = -2; i < rates.length; i++) {
                context.onStream(stream -> {
                    driver.record(start, stream);
                    driver.copyOnDeviceAsync(b, a, bytes, stream);
                    driver.record(end, stream);
                });
                driver.synchronizeEvent(end);
                if (i >= 0) rates[i] = 2.0 * bytes / (driver.elapsedMillis(start, end) / 1e3);
            }
            Arrays.sort(rates);
            return rates[rates.length / 2];
        } finally {
            driver.destroyEvent(start);
            driver.destroyEvent(end);
            context.free(a);
            context.free(b);
        }
    }

    /**
     * The R1-Distill-Qwen-1.5B layout with random bf16 values: every tensor is a window of one 512 MiB random
     * buffer (the values do not matter to the timing, only the shapes).
     */
    private static final class SyntheticCheckpoint implements Checkpoint {
        private final Arena arena = Arena.ofShared();
        private final MemorySegment random;
        private final MemorySegment ones;
        private final Map<String, CheckpointTensor> tensors = new LinkedHashMap<>();
        private final ModelConfig config;

        SyntheticCheckpoint() {
            long bytes = 512L << 20;
            random = arena.allocate(bytes, 64);
            int chunks = 64;
            long chunk = bytes / chunks;
            IntStream.range(0, chunks).parallel().forEach(c -> {
                SplittableRandom r = new SplittableRandom(c);
                for (long i = c * chunk; i < (c + 1) * chunk; i += 2) {
                    // a bf16 of magnitude in [2^-6, 2^-5) with a random sign and mantissa
                    int bits = (r.nextBoolean() ? 0x8000 : 0) | (121 << 7) | r.nextInt(0x80);
                    random.set(ValueLayout.JAVA_SHORT_UNALIGNED, i, (short) bits);
                }
            });
            ones = arena.allocate(2L * INTERMEDIATE, 64);
            for (int i = 0; i < INTERMEDIATE; i++) ones.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, (short) 0x3f80);

            int headDim = HIDDEN / HEADS;
            put("model.embed_tokens.weight", VOCAB, HIDDEN);
            for (int l = 0; l < LAYERS; l++) {
                String p = "model.layers." + l + ".";
                norm(p + "input_layernorm.weight", HIDDEN);
                put(p + "self_attn.q_proj.weight", HEADS * headDim, HIDDEN);
                put(p + "self_attn.k_proj.weight", KV_HEADS * headDim, HIDDEN);
                put(p + "self_attn.v_proj.weight", KV_HEADS * headDim, HIDDEN);
                put(p + "self_attn.q_proj.bias", HEADS * headDim);
                put(p + "self_attn.k_proj.bias", KV_HEADS * headDim);
                put(p + "self_attn.v_proj.bias", KV_HEADS * headDim);
                put(p + "self_attn.o_proj.weight", HIDDEN, HEADS * headDim);
                norm(p + "post_attention_layernorm.weight", HIDDEN);
                put(p + "mlp.gate_proj.weight", INTERMEDIATE, HIDDEN);
                put(p + "mlp.up_proj.weight", INTERMEDIATE, HIDDEN);
                put(p + "mlp.down_proj.weight", HIDDEN, INTERMEDIATE);
            }
            norm("model.norm.weight", HIDDEN);
            put("lm_head.weight", VOCAB, HIDDEN);

            Map<String, Object> c = new LinkedHashMap<>();
            c.put("architectures", List.of("Qwen2ForCausalLM"));
            c.put("model_type", "qwen2");
            c.put("hidden_act", "silu");
            c.put("hidden_size", HIDDEN);
            c.put("intermediate_size", INTERMEDIATE);
            c.put("num_hidden_layers", LAYERS);
            c.put("num_attention_heads", HEADS);
            c.put("num_key_value_heads", KV_HEADS);
            c.put("max_position_embeddings", 131072);
            c.put("rms_norm_eps", 1e-6);
            c.put("rope_theta", 10000.0);
            c.put("tie_word_embeddings", false);
            c.put("torch_dtype", "bfloat16");
            c.put("use_sliding_window", false);
            c.put("vocab_size", VOCAB);
            config = new ModelConfig(c, Path.of("synthetic-r1-distill-qwen-1.5b"));
        }

        private void put(String name, long... shape) {
            long bytes = 2;
            for (long d : shape) bytes *= d;
            long offset = (Math.floorMod(name.hashCode(), 1 << 20) * 64L) % (random.byteSize() - bytes + 1) / 64 * 64;
            tensors.put(name, new CheckpointTensor(name, DType.BF16, shape, random.asSlice(offset, bytes), location()));
        }

        private void norm(String name, int n) {
            tensors.put(name, new CheckpointTensor(name, DType.BF16, new long[] {n}, ones.asSlice(0, 2L * n), location()));
        }

        @Override
        public Path location() {
            return Path.of("synthetic-r1-distill-qwen-1.5b");
        }

        @Override
        public ModelConfig config() {
            return config;
        }

        @Override
        public Set<String> tensorNames() {
            return tensors.keySet();
        }

        @Override
        public Optional<CheckpointTensor> find(String name) {
            return Optional.ofNullable(tensors.get(name));
        }

        @Override
        public long dataBytes() {
            return tensors.values().stream().mapToLong(t -> t.size() * 2).sum();
        }

        /** The model owns and closes its checkpoint; the benchmark's own close after it must do nothing. */
        @Override
        public void close() {
            if (arena.scope().isAlive()) arena.close();
        }
    }
}
