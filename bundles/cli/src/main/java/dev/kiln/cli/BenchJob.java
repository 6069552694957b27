package dev.kiln.cli;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.models.runner.SequenceRunner;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.function.Function;
import org.osgi.framework.BundleContext;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code kiln bench}: prompt processing (pp) and token generation (tg) speed, as llama.cpp's llama-bench measures
 * them — pp: one prefill of N random tokens into an empty cache; tg: N single-token steps from an empty cache — and,
 * in the same run, the machine's read bandwidth, so that tg is reported as a fraction of its bound
 * (bytes of weights read per token ÷ bandwidth).
 */
@Component(service = Function.class, property = CommandJob.COMMAND + "=bench")
public final class BenchJob extends CommandJob {
    private BundleContext context;

    @Activate
    void activate(BundleContext context) {
        this.context = context;
    }

    @Override
    protected Object newCommand() {
        return new Bench(new KilnServices(context));
    }

    @Command(name = "bench", mixinStandardHelpOptions = true,
            description = "Measure prefill (pp) and decode (tg) speed and decode's fraction of the bandwidth bound.")
    static final class Bench implements Callable<Integer> {
        private final KilnServices services;

        @Mixin
        ModelOptions options;

        @Option(names = "--prompt", defaultValue = "512", description = "Prompt tokens for pp (default: ${DEFAULT-VALUE}; 0 skips).")
        int prompt;

        @Option(names = "--gen", defaultValue = "128", description = "Generated tokens for tg (default: ${DEFAULT-VALUE}; 0 skips).")
        int gen;

        @Option(names = "--repetitions", defaultValue = "3", description = "Measured runs of each test (default: ${DEFAULT-VALUE}).")
        int repetitions;

        Bench(KilnServices services) {
            this.services = services;
        }

        @Override
        public Integer call() throws Exception {
            if (prompt < 0 || gen < 0 || repetitions < 1) throw new IllegalArgumentException("--prompt and --gen must be >= 0, --repetitions >= 1");
            ComputeBackend backend = options.backend(services);
            int workers = backend.device().parallelism();
            long embeddingBytes;
            boolean tied;
            try (Checkpoint checkpoint = services.openCheckpoint(options.model)) {
                CheckpointTensor embedding = checkpoint.tensor("model.embed_tokens.weight");
                embeddingBytes = embedding.data().byteSize();
                tied = checkpoint.find("lm_head.weight").isEmpty();
            }
            int capacity = Math.max(Math.max(prompt, gen), 1);
            int blockSize = 16;
            int blocks = (capacity + blockSize - 1) / blockSize;
            try (CausalLanguageModel m = options.load(services, backend, Math.max(prompt, 1));
                 KvCache cache = m.allocateKvCache(blocks, blockSize)) {
                int[] blockIds = new int[blocks];
                Arrays.setAll(blockIds, i -> i);
                SequenceRunner runner = new SequenceRunner(m, cache, blockIds);
                SplittableRandom random = new SplittableRandom(42);
                // Decode reads every weight once per token; the embedding table only one row, unless it is also the output;
                // of a mixture of experts only the chosen routed experts (their share of the checkpoint's bytes).
                long bytesPerToken = m.weightBytesPerToken() - (tied ? 0 : embeddingBytes);
                boolean hostMemory = backend.name().equals("cpu");
                double bandwidth = hostMemory ? MemoryBandwidth.measure(workers, 1L << 30, 5) : Double.NaN;

                System.out.printf("model: %s %s, %.2f GB of weights (%.2f GB read per decoded token)%n", m.architecture(),
                        options.model.getFileName(), m.weightBytes() / 1e9, bytesPerToken / 1e9);
                System.out.printf("backend: %s: %s%n", backend.name(), backend.device().description());
                if (hostMemory) System.out.printf("read bandwidth: %.1f GB/s (%d threads, same run)%n", bandwidth / 1e9, workers);

                // One unmeasured round lets the JIT compile the kernels, as llama-bench's warm-up run does.
                if (prompt > 0) pp(runner, random, Math.min(prompt, 64), m.vocabSize());
                if (gen > 0) tg(runner, random, Math.min(gen, 16), m.vocabSize());

                System.out.println("| test | tok/s | runs |");
                System.out.println("|---|---|---|");
                if (prompt > 0) {
                    double[] r = new double[repetitions];
                    for (int i = 0; i < repetitions; i++) r[i] = pp(runner, random, prompt, m.vocabSize());
                    System.out.printf("| pp%d | %s | %s |%n", prompt, meanSd(r), Arrays.toString(round(r)));
                }
                if (gen > 0) {
                    double[] r = new double[repetitions];
                    for (int i = 0; i < repetitions; i++) r[i] = tg(runner, random, gen, m.vocabSize());
                    System.out.printf("| tg%d | %s | %s |%n", gen, meanSd(r), Arrays.toString(round(r)));
                    if (hostMemory) {
                        double bound = bandwidth / bytesPerToken;
                        System.out.printf("tg bound: %.1f tok/s (%.1f GB/s / %.2f GB per token); tg%d reaches %.0f%% of it%n",
                                bound, bandwidth / 1e9, bytesPerToken / 1e9, gen, 100 * mean(r) / bound);
                    } else {
                        // Host memory bandwidth says nothing of a GPU's: the GPU benchmarks measure the device's own.
                        System.out.printf("tg reads %.2f GB of weights per token from %s memory (no bound computed here)%n",
                                bytesPerToken / 1e9, backend.name());
                    }
                }
            }
            return 0;
        }

        private static double pp(SequenceRunner runner, SplittableRandom random, int n, int vocab) {
            int[] tokens = random.ints(n, 0, vocab).toArray();
            runner.reset();
            long t0 = System.nanoTime();
            runner.append(tokens);
            return n / ((System.nanoTime() - t0) / 1e9);
        }

        private static double tg(SequenceRunner runner, SplittableRandom random, int n, int vocab) {
            runner.reset();
            int token = random.nextInt(vocab);
            long t0 = System.nanoTime();
            for (int i = 0; i < n; i++) token = SequenceRunner.argmax(runner.append(token));
            return n / ((System.nanoTime() - t0) / 1e9);
        }

        private static double mean(double[] r) {
            return Arrays.stream(r).average().orElse(0);
        }

        private static String meanSd(double[] r) {
            double m = mean(r);
            double var = Arrays.stream(r).map(x -> (x - m) * (x - m)).sum() / Math.max(r.length - 1, 1);
            return String.format("%.2f ± %.2f", m, Math.sqrt(var));
        }

        private static double[] round(double[] r) {
            return Arrays.stream(r).map(x -> Math.round(x * 100) / 100.0).toArray();
        }
    }
}
