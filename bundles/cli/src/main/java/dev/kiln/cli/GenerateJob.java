package dev.kiln.cli;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.models.runner.SequenceRunner;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.function.Function;
import java.util.stream.Collectors;
import org.osgi.framework.BundleContext;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code kiln generate}: greedy continuation of a prompt given as token ids, with prefill and decode speed. Usable
 * before any tokenizer exists, and the quickest check that a checkpoint computes what its reference computes.
 */
@Component(service = Function.class, property = CommandJob.COMMAND + "=generate")
public final class GenerateJob extends CommandJob {
    private BundleContext context;

    @Activate
    void activate(BundleContext context) {
        this.context = context;
    }

    @Override
    protected Object newCommand() {
        return new Generate(new KilnServices(context));
    }

    @Command(name = "generate", mixinStandardHelpOptions = true,
            description = "Greedy generation from prompt token ids; prints the ids and the speed.")
    static final class Generate implements Callable<Integer> {
        private final KilnServices services;

        @Mixin
        ModelOptions options;

        @Option(names = "--prompt-ids", required = true, split = ",", description = "Prompt token ids, comma-separated.")
        List<Integer> promptIds;

        @Option(names = "--max-tokens", defaultValue = "16", description = "Tokens to generate (default: ${DEFAULT-VALUE}).")
        int maxTokens;

        @Option(names = "--stop-ids", split = ",", description = "Token ids that end generation.")
        List<Integer> stopIds = List.of();

        Generate(KilnServices services) {
            this.services = services;
        }

        @Override
        public Integer call() throws Exception {
            if (maxTokens < 0) throw new IllegalArgumentException("--max-tokens must be >= 0");
            int[] prompt = promptIds.stream().mapToInt(Integer::intValue).toArray();
            ComputeBackend backend = options.backend(services);
            int blockSize = 16;
            int total = prompt.length + maxTokens;
            try (CausalLanguageModel m = options.load(services, backend, Math.min(512, Math.max(total, 1)))) {
                for (int id : prompt) {
                    if (id < 0 || id >= m.vocabSize()) {
                        throw new IllegalArgumentException("prompt id " + id + " outside the vocabulary (0.." + (m.vocabSize() - 1) + ")");
                    }
                }
                int blocks = (total + blockSize - 1) / blockSize;
                try (KvCache cache = m.allocateKvCache(blocks, blockSize)) {
                    int[] blockIds = new int[blocks];
                    Arrays.setAll(blockIds, i -> i);
                    SequenceRunner runner = new SequenceRunner(m, cache, blockIds);
                    System.out.printf("model: %s, %d layers, hidden %d, vocab %d, %.1f MB of weights; backend %s%n",
                            m.architecture(), m.config().numLayers(), m.hiddenSize(), m.vocabSize(),
                            m.weightBytes() / 1e6, backend.device().description());

                    long t0 = System.nanoTime();
                    float[] logits = runner.append(prompt);
                    long t1 = System.nanoTime();
                    int[] generated = new int[maxTokens];
                    int count = 0;
                    while (count < maxTokens) {
                        int next = SequenceRunner.argmax(logits);
                        generated[count++] = next;
                        if (stopIds.contains(next) || count == maxTokens) break;
                        logits = runner.append(next);
                    }
                    long t2 = System.nanoTime();
                    int[] all = new int[prompt.length + count];
                    System.arraycopy(prompt, 0, all, 0, prompt.length);
                    System.arraycopy(generated, 0, all, prompt.length, count);

                    System.out.printf("prefill: %d tokens in %.1f ms (%.1f tok/s)%n", prompt.length, (t1 - t0) / 1e6,
                            prompt.length / ((t1 - t0) / 1e9));
                    // The first generated token comes from the prefill's logits; each later one costs one decode step.
                    int steps = Math.max(count - 1, 0);
                    System.out.printf("decode: %d tokens in %.1f ms (%.1f tok/s)%n", steps, (t2 - t1) / 1e6,
                            steps == 0 ? 0.0 : steps / ((t2 - t1) / 1e9));
                    System.out.println("generated: " + join(Arrays.copyOf(generated, count)));
                    System.out.println("ids: " + join(all));
                }
            }
            return 0;
        }

        private static String join(int[] ids) {
            return Arrays.stream(ids).mapToObj(Integer::toString).collect(Collectors.joining(","));
        }
    }
}
