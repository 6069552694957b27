package dev.kiln.models.llama;

import static dev.kiln.models.testing.Harness.BLOCK_SIZE;
import static dev.kiln.models.testing.Harness.maxAbsDiff;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.api.quant.Quantizer;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.loader.safetensors.TensorValues;
import dev.kiln.models.runner.SequenceRunner;
import dev.kiln.models.testing.Batches;
import dev.kiln.models.testing.BlockPool;
import dev.kiln.models.testing.EditedCheckpoint;
import dev.kiln.models.testing.Harness;
import dev.kiln.models.testing.Reference;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Test;

/** Loading choices (tied heads, quantizers), what the model reports about itself, and refused batches. */
class LlamaModelTest {
    private static final int NUM_BLOCKS = 32;
    private final ComputeBackend backend = Harness.backend();

    /** A fixture's prompt logits with the head taken as the embedding table: last_hidden · embed_tokensᵀ. */
    private static float[] logitsThroughTheEmbeddingTable(String fixture) {
        Reference reference = Reference.of(Harness.fixture(fixture));
        float[] hidden = reference.lastHidden(0);
        try (Checkpoint checkpoint = Harness.open(fixture)) {
            CheckpointTensor table = checkpoint.tensor("model.embed_tokens.weight");
            float[] embed = TensorValues.toFloats(table);
            int vocab = table.rows();
            int width = table.columns();
            int tokens = hidden.length / width;
            float[] logits = new float[tokens * vocab];
            for (int t = 0; t < tokens; t++) {
                for (int v = 0; v < vocab; v++) {
                    double sum = 0;
                    for (int c = 0; c < width; c++) sum += (double) hidden[t * width + c] * embed[v * width + c];
                    logits[t * vocab + v] = (float) sum;
                }
            }
            return logits;
        }
    }

    private float[] promptLogits(Checkpoint checkpoint, Quantizer quantizer, int[] prompt) {
        try (CausalLanguageModel model = Harness.build(checkpoint, quantizer, 64);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            var batch = new Batches(BLOCK_SIZE).addEveryLogit(new BlockPool(NUM_BLOCKS, 9).forTokens(prompt.length,
                    BLOCK_SIZE), 0, prompt).build(false);
            return backend.read(model.forward(batch, cache).logits());
        }
    }

    @Test
    void aTiedOrMissingHeadProjectsThroughTheEmbeddingTable() {
        int[] prompt = Reference.of(Harness.fixture("qwen2-tiny")).prompt(0);
        float[] expected = logitsThroughTheEmbeddingTable("qwen2-tiny");
        List<UnaryOperator<EditedCheckpoint>> tyings = List.of(
                c -> c.remove("lm_head.weight"),
                c -> c.configure("tie_word_embeddings", true));
        for (var tie : tyings) {
            float[] logits = promptLogits(tie.apply(new EditedCheckpoint(Harness.open("qwen2-tiny"))), null, prompt);
            double diff = maxAbsDiff(logits, expected);
            assertTrue(diff < 1e-3, "tied logits differ by " + diff);
        }
        // The untied head is a different matrix: the check above would fail on it.
        float[] untied = promptLogits(Harness.open("qwen2-tiny"), null, prompt);
        assertTrue(maxAbsDiff(untied, expected) > 0.1);
    }

    /** Loads every weight densely while recording which prefixes the model asked it for. */
    private static class RecordingQuantizer implements Quantizer {
        final Set<String> prefixes = new HashSet<>();
        final boolean preQuantized;
        final int missingRows;

        RecordingQuantizer(boolean preQuantized, int missingRows) {
            this.preQuantized = preQuantized;
            this.missingRows = missingRows;
        }

        @Override
        public String name() {
            return "recording";
        }

        @Override
        public boolean supports(ComputeBackend backend) {
            return backend == Harness.backend();
        }

        @Override
        public boolean isPreQuantized(Checkpoint checkpoint) {
            return preQuantized;
        }

        @Override
        public Weight load(Checkpoint checkpoint, String prefix, ComputeBackend backend) {
            prefixes.add(prefix);
            Weight dense = backend.denseWeight(checkpoint.tensor(prefix + ".weight"));
            if (missingRows == 0) return dense;
            // A buggy format that loses track of its shape: the model must notice.
            return new MisshapenWeight(dense, missingRows);
        }
    }

    /** A weight that reports fewer rows than it has. */
    private record MisshapenWeight(Weight dense, int missingRows) implements Weight {
        @Override
        public String format() {
            return dense.format();
        }

        @Override
        public int rows() {
            return dense.rows() - missingRows;
        }

        @Override
        public int columns() {
            return dense.columns();
        }

        @Override
        public long bytes() {
            return dense.bytes();
        }

        @Override
        public void multiply(Tensor x, Tensor out) {
            dense.multiply(x, out);
        }

        @Override
        public void gatherRows(int[] ids, Tensor out) {
            dense.gatherRows(ids, out);
        }
    }

    private static Set<String> linearLayers(int layers) {
        Set<String> prefixes = new HashSet<>();
        for (int i = 0; i < layers; i++) {
            for (String m : List.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")) {
                prefixes.add("model.layers." + i + "." + m);
            }
        }
        return prefixes;
    }

    @Test
    void aQuantizerLoadsEveryLinearLayerAndTheHeadUnlessTheCheckpointIsPreQuantized() {
        int[] prompt = Reference.of(Harness.fixture("llama3-tiny")).prompt(0);
        float[] dense = promptLogits(Harness.open("llama3-tiny"), null, prompt);

        var converting = new RecordingQuantizer(false, 0);
        float[] converted = promptLogits(Harness.open("llama3-tiny"), converting, prompt);
        Set<String> expected = linearLayers(2);
        expected.add("lm_head");
        assertEquals(expected, converting.prefixes);
        assertArrayEquals(dense, converted);

        var preQuantized = new RecordingQuantizer(true, 0);
        promptLogits(Harness.open("llama3-tiny"), preQuantized, prompt);
        assertEquals(linearLayers(2), preQuantized.prefixes);

        var tied = new RecordingQuantizer(false, 0);
        promptLogits(new EditedCheckpoint(Harness.open("llama3-tiny")).remove("lm_head.weight"), tied, prompt);
        assertTrue(tied.prefixes.contains("model.embed_tokens"), "a tied head is quantized from the table");
        assertFalse(tied.prefixes.contains("lm_head"));
    }

    @Test
    void aQuantizedWeightOfTheWrongShapeOrAnUnsupportedQuantizerIsRefused() {
        var e = assertThrows(InvalidCheckpointException.class,
                () -> Harness.build(Harness.open("llama3-tiny"), new RecordingQuantizer(false, 1), 64));
        assertEquals("model.layers.0.self_attn.q_proj.weight", e.field());

        Quantizer elsewhere = new RecordingQuantizer(false, 0) {
            @Override
            public boolean supports(ComputeBackend backend) {
                return false;
            }
        };
        var checkpoint = new EditedCheckpoint(Harness.open("llama3-tiny"));
        assertThrows(IllegalArgumentException.class, () -> Harness.build(checkpoint, elsewhere, 64));
        assertTrue(checkpoint.closed(), "the model owned the checkpoint and closed it on failure");
    }

    @Test
    void theModelDescribesItselfFromTheCheckpoint() {
        try (Checkpoint sizes = Harness.open("qwen2-tiny");
             CausalLanguageModel model = Harness.build("qwen2-tiny", 48)) {
            assertEquals("qwen2", model.architecture());
            assertEquals(384, model.vocabSize());
            assertEquals(64, model.hiddenSize());
            assertEquals(48, model.maxBatchTokens());
            assertEquals(new KvCacheSpec(3, 2, 16, 16, false, DType.F32), model.kvCacheSpec());
            // Matrices stay bf16 (2 bytes); norms and biases become f32 vectors (4 bytes); nothing counted twice.
            long expected = 0;
            for (String name : sizes.tensorNames()) {
                CheckpointTensor t = sizes.tensor(name);
                expected += t.shape().length == 2 ? t.size() * 2 : t.size() * 4;
            }
            assertEquals(expected, model.weightBytes());
            try (KvCache cache = model.allocateKvCache(4, BLOCK_SIZE)) {
                assertEquals(4, cache.numBlocks());
                assertEquals(BLOCK_SIZE, cache.blockSize());
            }
        }
    }

    @Test
    void batchesTheModelCannotServeAreRefused() {
        try (CausalLanguageModel model = Harness.build("qwen2-tiny", 16);
             KvCache cache = model.allocateKvCache(4, BLOCK_SIZE)) {
            int[] blocks = {3, 1};
            int[] seventeen = new int[17];
            assertThrows(IllegalArgumentException.class, () -> model.forward(
                    new Batches(BLOCK_SIZE).add(new int[] {3, 1}, 0, seventeen).build(false), cache), "over maxBatchTokens");
            assertThrows(IllegalArgumentException.class, () -> model.forward(
                    new Batches(BLOCK_SIZE).add(blocks, 0, new int[] {5, 384}).build(false), cache), "token outside vocab");
            assertThrows(IllegalArgumentException.class, () -> model.forward(
                    new Batches(BLOCK_SIZE).add(new int[] {4}, 0, new int[] {5, 6}).build(false), cache), "block outside");
            var shortTable = new ForwardBatch(new int[] {5}, new int[] {16},
                    new AttentionMetadata(new int[] {0, 1}, new int[] {17}, new int[][] {{3}}, new int[] {16}), new int[] {0},
                    false);
            assertThrows(IllegalArgumentException.class, () -> model.forward(shortTable, cache), "table too short");
            var slotOutside = new ForwardBatch(new int[] {5}, new int[] {0},
                    new AttentionMetadata(new int[] {0, 1}, new int[] {1}, new int[][] {{3}}, new int[] {64}), new int[] {0},
                    false);
            assertThrows(IllegalArgumentException.class, () -> model.forward(slotOutside, cache), "slot outside");
        }
    }

    @Test
    void theRunnerRefusesToOutgrowItsBlocks() {
        try (CausalLanguageModel model = Harness.build("qwen2-tiny", 16);
             KvCache cache = model.allocateKvCache(4, BLOCK_SIZE)) {
            var runner = new SequenceRunner(model, cache, new int[] {2, 0}, 5);
            runner.append(new int[30]);
            assertEquals(30, runner.length());
            assertThrows(IllegalArgumentException.class, () -> runner.append(1, 2, 3));
            assertEquals(30, runner.length());
            runner.reset();
            assertEquals(0, runner.length());
            assertThrows(IllegalArgumentException.class, () -> new SequenceRunner(model, cache, new int[] {4}));
            assertThrows(IllegalArgumentException.class, () -> new SequenceRunner(model, cache, new int[] {0}, 17));
            List<Integer> stops = new ArrayList<>();
            int[] out = runner.generateGreedy(new int[] {1, 2, 3}, 10, t -> stops.add(t) && stops.size() == 2);
            assertEquals(2, out.length, "stops after the second token the predicate accepts");
        }
    }
}
