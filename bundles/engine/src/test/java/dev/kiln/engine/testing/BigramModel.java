package dev.kiln.engine.testing;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.api.model.ForwardResult;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import java.util.Map;

/**
 * A language model whose next-token logits depend only on the current token (a Markov chain over a small
 * vocabulary): its exact distribution over continuations is known, which lets tests check sampling statistically
 * through the whole engine. Its cache stores nothing.
 */
public final class BigramModel implements CausalLanguageModel {
    private static final int MAX_BATCH = 512;
    private static final KvCacheSpec SPEC = new KvCacheSpec(1, 1, 1, 1, false, DType.F32);

    private final float[][] logits;
    private final int vocab;
    private final ComputeBackend backend = Fixtures.backend();
    private final Tensor out;
    private final ModelConfig config;

    /** @param logits {@code logits[t]}: the next-token logits after token t */
    public BigramModel(float[][] logits) {
        this.logits = logits;
        this.vocab = logits.length;
        this.out = backend.allocate(DType.F32, MAX_BATCH, vocab);
        this.config = new ModelConfig(Map.of("max_position_embeddings", 256, "vocab_size", vocab), null);
    }

    /** The next-token probabilities after token t at temperature 1. */
    public double[] probabilities(int t) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : logits[t]) max = Math.max(max, v);
        double[] p = new double[vocab];
        double sum = 0;
        for (int v = 0; v < vocab; v++) sum += p[v] = Math.exp(logits[t][v] - max);
        for (int v = 0; v < vocab; v++) p[v] /= sum;
        return p;
    }

    @Override
    public ForwardResult forward(ForwardBatch batch, KvCache cache) {
        int rows = batch.logitRows().length;
        float[] values = new float[Math.max(1, rows) * vocab];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(logits[batch.tokens()[batch.logitRows()[r]]], 0, values, r * vocab, vocab);
        }
        Tensor result = out.rows(Math.max(1, rows));
        backend.write(values, result);
        return new ForwardResult(result, null);
    }

    @Override
    public ModelConfig config() {
        return config;
    }

    @Override
    public String architecture() {
        return "bigram";
    }

    @Override
    public ComputeBackend backend() {
        return backend;
    }

    @Override
    public int vocabSize() {
        return vocab;
    }

    @Override
    public int hiddenSize() {
        return 1;
    }

    @Override
    public long weightBytes() {
        return (long) vocab * vocab * Float.BYTES;
    }

    @Override
    public KvCacheSpec kvCacheSpec() {
        return SPEC;
    }

    @Override
    public KvCache allocateKvCache(int numBlocks, int blockSize) {
        return new KvCache() {
            @Override
            public KvCacheSpec spec() {
                return SPEC;
            }

            @Override
            public int blockSize() {
                return blockSize;
            }

            @Override
            public int numBlocks() {
                return numBlocks;
            }

            @Override
            public long bytes() {
                return 0;
            }

            @Override
            public void copyBlocks(int[] from, int[] to) {}

            @Override
            public void close() {}
        };
    }

    @Override
    public int maxBatchTokens() {
        return MAX_BATCH;
    }

    @Override
    public void close() {
        out.close();
    }
}
