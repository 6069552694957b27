package dev.kiln.backend.cuda.testing;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.backend.PendingTokens;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.api.model.ModelArchitecture;
import dev.kiln.api.model.ModelBuildOptions;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.api.tensor.DType;
import dev.kiln.loader.safetensors.SafetensorsCheckpointLoader;
import dev.kiln.loader.safetensors.SafetensorsFile;
import dev.kiln.loader.safetensors.TensorValues;
import dev.kiln.models.deepseek.DeepSeekV2Architecture;
import dev.kiln.models.deepseek.DeepSeekV3Architecture;
import dev.kiln.models.llama.LlamaArchitecture;
import dev.kiln.models.llama.Qwen2Architecture;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.function.IntUnaryOperator;

/**
 * The fixture checkpoints (folder from the {@code kiln.fixtures} system property) built on a given backend, their
 * float64 references, and forward batches laid out as an engine lays them out.
 */
public final class Fixtures {
    /** Token slots per cache block in these tests. */
    public static final int BLOCK_SIZE = 16;

    private static final List<ModelArchitecture> ARCHITECTURES = List.of(new Qwen2Architecture(), new LlamaArchitecture(),
            new DeepSeekV2Architecture(), new DeepSeekV3Architecture());

    private Fixtures() {}

    /** A fixture's folder. */
    public static Path folder(String fixture) {
        String root = Objects.requireNonNull(System.getProperty("kiln.fixtures"),
                "system property kiln.fixtures must name the fixtures folder");
        return Path.of(root, "models", fixture);
    }

    /** Builds a fixture's model on a backend with an attention kernel. */
    public static CausalLanguageModel build(String fixture, ComputeBackend backend, AttentionKernel attention,
                                            int maxBatchTokens) {
        return build(fixture, backend, attention, null, maxBatchTokens);
    }

    /** Builds a fixture's model on a backend with an attention kernel, its linear layers quantized on load. */
    public static CausalLanguageModel build(String fixture, ComputeBackend backend, AttentionKernel attention,
                                            Quantizer quantizer, int maxBatchTokens) {
        return build(fixture, backend, attention, quantizer, maxBatchTokens, null);
    }

    /**
     * Builds a fixture's model with a KV cache of the given element type ({@code null}: the architecture's default,
     * f32).
     */
    public static CausalLanguageModel build(String fixture, ComputeBackend backend, AttentionKernel attention,
                                            Quantizer quantizer, int maxBatchTokens, DType kvCacheDtype) {
        return build(open(folder(fixture)), backend, attention, quantizer, maxBatchTokens, kvCacheDtype);
    }

    /** Opens a checkpoint folder (a fixture's, a synthetic model's). */
    public static Checkpoint open(Path folder) {
        try {
            return new SafetensorsCheckpointLoader().open(folder);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Builds an opened checkpoint (a fixture, a synthetic model) by the architecture that supports its configuration. */
    public static CausalLanguageModel build(Checkpoint checkpoint, ComputeBackend backend, AttentionKernel attention,
                                            Quantizer quantizer, int maxBatchTokens, DType kvCacheDtype) {
        ModelArchitecture architecture = ARCHITECTURES.stream().filter(a -> a.supports(checkpoint.config())).findFirst()
                .orElseThrow(() -> new IllegalArgumentException("no architecture for " + checkpoint.location()));
        return architecture.build(checkpoint,
                new ModelBuildOptions(backend, attention, quantizer, maxBatchTokens, kvCacheDtype));
    }

    /** An int tensor of a fixture's {@code reference.safetensors}. */
    public static int[] ints(String fixture, String name) {
        try (SafetensorsFile f = SafetensorsFile.open(folder(fixture).resolve("reference.safetensors"))) {
            return TensorValues.toInts(f.tensor(name));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** A float tensor of a fixture's {@code reference.safetensors}, row-major. */
    public static float[] floats(String fixture, String name) {
        try (SafetensorsFile f = SafetensorsFile.open(folder(fixture).resolve("reference.safetensors"))) {
            return TensorValues.toFloats(f.tensor(name));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Rows {@code from..to-1} of a row-major matrix. */
    public static float[] rows(float[] matrix, int width, int from, int to) {
        return Arrays.copyOfRange(matrix, from * width, to * width);
    }

    /** The index of the largest value (the first on ties). */
    public static int argmax(float[] values) {
        int best = 0;
        for (int i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    /** A batch of several sequences, each with its blocks, cached length and new tokens. */
    public static final class Batch {
        private record Part(int[] blocks, int cached, int[] tokens, boolean everyLogit, boolean padding) {}

        private final List<Part> parts = new ArrayList<>();

        /** Adds a sequence whose last new token needs logits. */
        public Batch add(int[] blocks, int cached, int[] tokens) {
            parts.add(new Part(blocks, cached, tokens, false, false));
            return this;
        }

        /** Adds a sequence all of whose new tokens need logits. */
        public Batch addEveryLogit(int[] blocks, int cached, int[] tokens) {
            parts.add(new Part(blocks, cached, tokens, true, false));
            return this;
        }

        /**
         * Adds padding sequences up to {@code sequences}, as the engine pads decode steps: one token 0 at position 0 that
         * stores nothing (slot -1) and attends to the first sequence's first block, no logits.
         */
        public Batch padTo(int sequences) {
            int[] first = parts.getFirst().blocks;
            while (parts.size() < sequences) parts.add(new Part(new int[] {first[0]}, 0, new int[] {0}, false, true));
            return this;
        }

        /** The forward batch. */
        public ForwardBatch build() {
            return build(null);
        }

        /** The forward batch, whose negative tokens are placeholders for these pending tokens. */
        public ForwardBatch build(PendingTokens pending) {
            int total = parts.stream().mapToInt(p -> p.tokens.length).sum();
            int[] tokens = new int[total], positions = new int[total], slots = new int[total];
            int[] queryStart = new int[parts.size() + 1];
            int[] context = new int[parts.size()];
            int[][] tables = new int[parts.size()][];
            List<Integer> logitRows = new ArrayList<>();
            int row = 0;
            for (int s = 0; s < parts.size(); s++) {
                Part p = parts.get(s);
                queryStart[s] = row;
                context[s] = p.cached + p.tokens.length;
                tables[s] = Arrays.copyOf(p.blocks, (context[s] + BLOCK_SIZE - 1) / BLOCK_SIZE);
                for (int j = 0; j < p.tokens.length; j++, row++) {
                    int position = p.cached + j;
                    tokens[row] = p.tokens[j];
                    positions[row] = position;
                    slots[row] = p.padding ? -1 : p.blocks[position / BLOCK_SIZE] * BLOCK_SIZE + position % BLOCK_SIZE;
                    if (!p.padding && (p.everyLogit || j == p.tokens.length - 1)) logitRows.add(row);
                }
            }
            queryStart[parts.size()] = row;
            return new ForwardBatch(tokens, positions, new AttentionMetadata(queryStart, context, tables, slots),
                    logitRows.stream().mapToInt(Integer::intValue).toArray(), false, pending);
        }
    }

    /** Consecutive block ids {@code first .. first+n-1} in reverse order (never contiguous ascending). */
    public static int[] blocks(int first, int n) {
        int[] b = new int[n];
        for (int i = 0; i < n; i++) b[i] = first + n - 1 - i;
        return b;
    }

    /**
     * Prefills {@code sequences} prompts (sequence s: the first {@code length.applyAsInt(s)} tokens of
     * {@code prompt}, the cache's first {@code numBlocks} blocks shared out evenly), then decodes them together
     * greedily for {@code steps} steps, each step's batch padded to {@code padTo} sequences (no more than it has:
     * none); the logits of the prefill (one row a sequence) and of every step.
     */
    public static List<float[]> greedyDecode(ComputeBackend backend, CausalLanguageModel model, KvCache cache, int[] prompt,
                                             int sequences, int numBlocks, int steps, int padTo, IntUnaryOperator length) {
        List<float[]> out = new ArrayList<>();
        int vocab = model.vocabSize();
        int perSequence = numBlocks / sequences;
        int[][] tables = new int[sequences][];
        int[] lengths = new int[sequences];
        Batch prefill = new Batch();
        for (int s = 0; s < sequences; s++) {
            tables[s] = blocks(s * perSequence, perSequence);
            lengths[s] = length.applyAsInt(s);
            prefill.add(tables[s], 0, Arrays.copyOf(prompt, lengths[s]));
        }
        float[] logits = backend.read(model.forward(prefill.build(), cache).logits());
        out.add(logits);
        for (int step = 0; step < steps; step++) {
            Batch batch = new Batch();
            for (int s = 0; s < sequences; s++) {
                batch.add(tables[s], lengths[s], new int[] {argmax(rows(logits, vocab, s, s + 1))});
                lengths[s]++;
            }
            logits = backend.read(model.forward(batch.padTo(padTo).build(), cache).logits());
            out.add(logits);
        }
        return out;
    }
}
