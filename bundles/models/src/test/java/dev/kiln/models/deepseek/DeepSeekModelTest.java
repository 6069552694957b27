package dev.kiln.models.deepseek;

import static dev.kiln.models.testing.Harness.BLOCK_SIZE;
import static dev.kiln.models.testing.Harness.maxAbsDiff;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.tensor.DType;
import dev.kiln.loader.safetensors.TensorValues;
import dev.kiln.models.runner.SequenceRunner;
import dev.kiln.models.testing.Batches;
import dev.kiln.models.testing.BlockPool;
import dev.kiln.models.testing.EditedCheckpoint;
import dev.kiln.models.testing.Harness;
import dev.kiln.models.testing.Reference;
import dev.kiln.quant.fp8.Fp8Quantizer;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Loading choices (FP8, quantizing on load, MTP presence), what the model reports, and refused inputs. */
class DeepSeekModelTest {
    private static final int NUM_BLOCKS = 16;
    private final ComputeBackend backend = Harness.backend();

    private float[] promptLogits(CausalLanguageModel model, int[] prompt) {
        try (KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            var batch = new Batches(BLOCK_SIZE).addEveryLogit(new BlockPool(NUM_BLOCKS, 1).forTokens(prompt.length,
                    BLOCK_SIZE), 0, prompt).build(false);
            return backend.read(model.forward(batch, cache).logits());
        }
    }

    @Test
    void anFp8CheckpointStaysFp8InMemory() {
        try (Checkpoint checkpoint = Harness.open("deepseek-v3-tiny-fp8");
             CausalLanguageModel model = Harness.build(checkpoint, new Fp8Quantizer(), 64)) {
            long file = checkpoint.dataBytes();
            System.out.printf("deepseek-v3-tiny-fp8: weights held %d bytes for %d bytes of tensors in the file (%.3f)%n",
                    model.weightBytes(), file, (double) model.weightBytes() / file);
            // Inflating the FP8 layers to f32 would hold about 2.6 times the file; bf16, 1.7 times.
            assertTrue(model.weightBytes() < 1.1 * file, model.weightBytes() + " bytes held for a file of " + file);
        }
    }

    @Test
    void aPreQuantizedCheckpointWithoutItsQuantizerIsRefused() {
        var e = assertThrows(InvalidCheckpointException.class,
                () -> Harness.build(Harness.open("deepseek-v3-tiny-fp8"), null, 64));
        assertEquals("quantization_config", e.field());
    }

    /**
     * Quantizing on load is exactly "round each 128×128 block to e4m3 with scale amax/448, then compute": the model
     * built with the quantizer gives the logits of the same model run densely on weights rounded by the safetensors
     * loader's independent e4m3 codec. (Against the unquantized reference the logits of these random tiny weights
     * move by 8.4 at a scale of 12.6; the fixtures' numpy specification, quantized the same way, moves by the same.)
     */
    @Test
    void aBf16CheckpointQuantizedToFp8OnLoadComputesWithTheRoundedWeights() {
        int[] prompt = Reference.of(Harness.fixture("deepseek-v3-tiny")).prompt(0);
        float[] quantized;
        try (CausalLanguageModel model = Harness.build(Harness.open("deepseek-v3-tiny"), new Fp8Quantizer(), 64)) {
            quantized = promptLogits(model, prompt);
        }
        float[] original;
        try (CausalLanguageModel model = Harness.build("deepseek-v3-tiny", 64)) {
            original = promptLogits(model, prompt);
        }
        try (Arena arena = Arena.ofShared()) { // the backend's worker threads read the weights
            var rounded = new EditedCheckpoint(Harness.open("deepseek-v3-tiny"));
            for (String name : rounded.tensorNames()) {
                CheckpointTensor t = rounded.tensor(name);
                boolean linear = t.shape().length == 2 && !name.contains("embed_tokens") && !name.endsWith("mlp.gate.weight");
                if (linear) rounded.replace(roundedToFp8Blocks(t, arena));
            }
            try (CausalLanguageModel model = Harness.build(rounded, null, 64)) {
                float[] dense = promptLogits(model, prompt);
                double diff = maxAbsDiff(quantized, dense);
                System.out.printf("deepseek-v3-tiny quantized on load vs dense on rounded weights: max |diff| = %.2e "
                        + "(vs the unquantized model: %.2e)%n", diff, maxAbsDiff(quantized, original));
                assertTrue(diff < 5e-5, "quantized on load differs from the rounded weights by " + diff);
                assertTrue(maxAbsDiff(quantized, original) > 1e-2, "quantization must change the logits");
            }
        }
    }

    /** The tensor's values rounded to e4m3 per 128×128 block (scale = block amax / 448), as an F32 tensor. */
    private static CheckpointTensor roundedToFp8Blocks(CheckpointTensor t, Arena arena) {
        float[] w = TensorValues.toFloats(t);
        int rows = t.rows(), columns = t.columns();
        float[] out = new float[w.length];
        for (int r0 = 0; r0 < rows; r0 += 128) {
            for (int c0 = 0; c0 < columns; c0 += 128) {
                float amax = 0;
                for (int r = r0; r < Math.min(rows, r0 + 128); r++) {
                    for (int c = c0; c < Math.min(columns, c0 + 128); c++) amax = Math.max(amax, Math.abs(w[r * columns + c]));
                }
                float scale = amax > 0 ? amax / 448f : 1f;
                for (int r = r0; r < Math.min(rows, r0 + 128); r++) {
                    for (int c = c0; c < Math.min(columns, c0 + 128); c++) {
                        int i = r * columns + c;
                        out[i] = TensorValues.f8e4m3ToFloat(TensorValues.floatToF8e4m3(w[i] / scale)) * scale;
                    }
                }
            }
        }
        MemorySegment data = arena.allocate(4L * out.length, 8);
        MemorySegment.copy(out, 0, data, ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0, out.length);
        return new CheckpointTensor(t.name(), DType.F32, t.shape(), data, t.file());
    }

    /** A token reads its 2 of 8 routed experts: 3/4 of every MoE layer's expert bytes are left out of the bound. */
    @Test
    void aTokenReadsOnlyItsChosenExpertsBytes() {
        try (Checkpoint checkpoint = Harness.open("deepseek-v2-lite-tiny")) {
            long unchosen = 0;
            for (int layer = 0; layer < checkpoint.config().getInt("num_hidden_layers"); layer++) {
                long routed = 0;
                for (String name : checkpoint.tensorNames()) {
                    if (name.startsWith("model.layers." + layer + ".mlp.experts.")) routed += checkpoint.tensor(name).data().byteSize();
                }
                unchosen += Math.round(routed * (1 - 2.0 / 8));
            }
            assertTrue(unchosen > 0);
            try (CausalLanguageModel model = Harness.build("deepseek-v2-lite-tiny", 32)) {
                assertEquals(model.weightBytes() - unchosen, model.weightBytesPerToken());
            }
        }
    }

    /** The MTP module counts in the model's weights but not in what a plainly decoded token reads. */
    @Test
    void aTokenDoesNotReadTheMtpModule() {
        var stripped = new EditedCheckpoint(Harness.open("deepseek-v3-tiny")).remove("model.layers.3.eh_proj.weight");
        try (CausalLanguageModel withModule = Harness.build("deepseek-v3-tiny", 32);
             CausalLanguageModel without = Harness.build(stripped, null, 32)) {
            assertTrue(withModule.weightBytes() > without.weightBytes());
            assertEquals(without.weightBytesPerToken(), withModule.weightBytesPerToken());
        }
    }

    @Test
    void onlyACheckpointWithTheModuleOffersAnMtpHead() {
        try (CausalLanguageModel v2 = Harness.build("deepseek-v2-lite-tiny", 32)) {
            assertTrue(MtpHead.of(v2).isEmpty());
        }
        var stripped = new EditedCheckpoint(Harness.open("deepseek-v3-tiny")).remove("model.layers.3.eh_proj.weight");
        try (CausalLanguageModel v3 = Harness.build(stripped, null, 32)) {
            assertTrue(MtpHead.of(v3).isEmpty());
        }
        try (CausalLanguageModel v3 = Harness.build("deepseek-v3-tiny", 32)) {
            MtpHead mtp = MtpHead.of(v3).orElseThrow();
            assertEquals(1, mtp.kvCacheSpec().layers());
            assertEquals(v3.kvCacheSpec().keyDim(), mtp.kvCacheSpec().keyDim());
        }
    }

    @Test
    void theCacheHoldsOnlyTheLatentAndTheRopeKey() {
        try (CausalLanguageModel model = Harness.build("deepseek-v3-tiny", 32)) {
            var spec = model.kvCacheSpec();
            assertEquals(1, spec.kvHeads());
            assertEquals(64 + 16, spec.keyDim());
            assertEquals(64, spec.valueDim());
            assertTrue(spec.valuesInKeys());
            assertEquals(3L * 80 * DType.F32.byteSize(), spec.bytesPerToken());
            assertEquals("deepseek_v3", model.architecture());
        }
    }

    @Test
    void aCacheOfAnotherGeometryIsRefused() {
        try (CausalLanguageModel model = Harness.build("deepseek-v3-tiny", 32);
             KvCache mtpCache = MtpHead.of(model).orElseThrow().allocateKvCache(4, BLOCK_SIZE)) {
            int[] prompt = {1, 2, 3};
            var batch = new Batches(BLOCK_SIZE).add(new int[] {0}, 0, prompt).build(false);
            assertThrows(IllegalArgumentException.class, () -> model.forward(batch, mtpCache));
        }
    }

    @Test
    void unsupportedRoutingOrActivationIsRefusedByField() {
        Map<String, Object> edits = Map.of(
                "scoring_func", "sqrtsoftplus",
                "topk_method", "random",
                "n_group", 3,
                "hidden_act", "gelu");
        for (var edit : edits.entrySet()) {
            var checkpoint = new EditedCheckpoint(Harness.open("deepseek-v3-tiny")).configure(edit.getKey(), edit.getValue());
            var e = assertThrows(InvalidCheckpointException.class, () -> Harness.build(checkpoint, null, 32));
            assertEquals(edit.getKey(), e.field());
            assertTrue(checkpoint.closed(), "the checkpoint is closed when the build fails");
        }
    }

    @Test
    void aMissingExpertIsRefusedByName() {
        var checkpoint = new EditedCheckpoint(Harness.open("deepseek-v2-lite-tiny"))
                .remove("model.layers.2.mlp.experts.5.up_proj.weight");
        var e = assertThrows(InvalidCheckpointException.class, () -> Harness.build(checkpoint, null, 32));
        assertEquals("model.layers.2.mlp.experts.5.up_proj.weight", e.field());
        assertTrue(checkpoint.closed());
    }

    @Test
    void greedyDecodingOfTheFp8ModelMatchesTheReferenceThroughTheRunner() {
        Reference reference = Reference.of(Harness.fixture("deepseek-v3-tiny-fp8"));
        int[] prompt = reference.prompt(1);
        int[] greedy = reference.greedyIds(1);
        try (CausalLanguageModel model = Harness.build(Harness.open("deepseek-v3-tiny-fp8"), new Fp8Quantizer(), 8);
             KvCache cache = model.allocateKvCache(NUM_BLOCKS, BLOCK_SIZE)) {
            // A workspace of 8 tokens: the runner has to chunk even this short prompt's continuation check.
            var runner = new SequenceRunner(model, cache, new BlockPool(NUM_BLOCKS, 2).forTokens(greedy.length, BLOCK_SIZE));
            int[] generated = runner.generateGreedy(prompt, greedy.length - prompt.length, token -> false);
            assertEquals(java.util.Arrays.toString(java.util.Arrays.copyOfRange(greedy, prompt.length, greedy.length)),
                    java.util.Arrays.toString(generated));
        }
    }
}
