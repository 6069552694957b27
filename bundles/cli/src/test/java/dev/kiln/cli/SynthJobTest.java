package dev.kiln.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.Gson;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ModelBuildOptions;
import dev.kiln.api.model.ModelConfig;
import dev.kiln.api.tensor.DType;
import dev.kiln.attention.paged.PagedAttention;
import dev.kiln.backend.cpu.CpuBackend;
import dev.kiln.loader.safetensors.SafetensorsCheckpointLoader;
import dev.kiln.models.deepseek.DeepSeekV2Architecture;
import dev.kiln.models.runner.SequenceRunner;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SynthJobTest {
    /** The hub-layout DeepSeek-V2-Lite fixture, written by transformers at small sizes. */
    private static final String DEEPSEEK_FIXTURE = "deepseek-v2-lite-tiny";

    /** The fields of DeepSeek-V2-Lite's configuration that fix tensor shapes (and token ids inside the vocabulary). */
    private static final List<String> DEEPSEEK_SIZE_FIELDS = List.of("hidden_size", "intermediate_size",
            "moe_intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "n_routed_experts", "n_shared_experts", "num_experts_per_tok", "first_k_dense_replace", "kv_lora_rank",
            "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "vocab_size", "bos_token_id", "eos_token_id");

    @Test
    void qwen15bShapesAddUpToTheRealModel() {
        Map<String, long[]> shapes = SyntheticModels.R1_DISTILL_QWEN_1_5B.tensorShapes();
        long params = shapes.values().stream().mapToLong(s -> {
            long n = 1;
            for (long d : s) n *= d;
            return n;
        }).sum();
        // DeepSeek-R1-Distill-Qwen-1.5B has 1,777,088,000 parameters (untied embedding and head).
        assertEquals(1_777_088_000L, params);
        assertEquals(28 * 12 + 3, shapes.size());
    }

    @Test
    void llama8bHasTheRealParameterCount() {
        long params = SyntheticModels.R1_DISTILL_LLAMA_8B.tensorShapes().values().stream().mapToLong(s -> {
            long n = 1;
            for (long d : s) n *= d;
            return n;
        }).sum();
        assertEquals(8_030_261_248L, params);
    }

    @Test
    void randomWeightsHaveTheInitialisationsSpread() {
        ByteBuffer chunk = ByteBuffer.allocate(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
        SynthJob.fillUniformBf16(chunk, 42, (float) (0.02 * Math.sqrt(3)));
        chunk.flip();
        double sum = 0, sq = 0;
        int n = chunk.remaining() / 2;
        for (int i = 0; i < n; i++) {
            float v = Float.intBitsToFloat((chunk.getShort() & 0xffff) << 16);
            sum += v;
            sq += v * v;
        }
        assertEquals(0, sum / n, 1e-3);
        assertEquals(0.02, Math.sqrt(sq / n), 1e-3);
        assertTrue(n == (1 << 19));
    }

    @Test
    void deepseekV2LiteHasTheRealParameterCount() {
        Map<String, long[]> shapes = SyntheticModels.DEEPSEEK_V2_LITE.tensorShapes();
        long params = shapes.values().stream().mapToLong(s -> {
            long n = 1;
            for (long d : s) n *= d;
            return n;
        }).sum();
        // DeepSeek-V2-Lite(-Chat) has 15.7B parameters (untied embedding and head).
        assertEquals(15_706_484_224L, params);
        // Embedding, norm, head; 7 attention tensors per layer; layer 0's dense MLP; then per MoE layer the router,
        // 64 experts of 3 projections and the shared experts' 3.
        assertEquals(3 + 27 * 7 + 3 + 26 * (1 + 64 * 3 + 3), shapes.size());
    }

    @Test
    void deepseekV2LiteAtTheFixturesSizesHasTheFixturesTensors(@TempDir Path out) throws IOException {
        SynthJob.write(deepseekV2LiteAtFixtureSizes(), out, 7);
        try (Checkpoint synthetic = new SafetensorsCheckpointLoader().open(out);
             Checkpoint fixture = new SafetensorsCheckpointLoader().open(fixtureFolder())) {
            assertEquals(new TreeSet<>(fixture.tensorNames()), new TreeSet<>(synthetic.tensorNames()));
            for (String name : fixture.tensorNames()) {
                CheckpointTensor expected = fixture.tensor(name);
                CheckpointTensor actual = synthetic.tensor(name);
                assertArrayEquals(expected.shape(), actual.shape(), name);
                assertEquals(DType.BF16, actual.dtype(), name);
            }
        }
    }

    @Test
    void deepseekV2LiteAtSmallSizesLoadsEveryTensorAndRunsAForward(@TempDir Path out) throws IOException {
        // Shards of 256 KiB, so that the small checkpoint is read through its index as the full-size one is.
        SynthJob.write(deepseekV2LiteAtFixtureSizes(), out, 11, 256 << 10);
        assertTrue(Files.exists(out.resolve("model.safetensors.index.json")));
        String configJson = Files.readString(out.resolve("config.json"), StandardCharsets.UTF_8);
        assertTrue(configJson.contains("\"q_lora_rank\": null"), configJson);

        RecordingCheckpoint checkpoint = new RecordingCheckpoint(new SafetensorsCheckpointLoader().open(out));
        DeepSeekV2Architecture architecture = new DeepSeekV2Architecture();
        assertTrue(architecture.supports(checkpoint.config()));
        int vocab = checkpoint.config().vocabSize();
        try (CpuBackend backend = new CpuBackend(2);
             CausalLanguageModel model = architecture.build(checkpoint,
                     new ModelBuildOptions(backend, new PagedAttention(), null, 16))) {
            Set<String> unread = new TreeSet<>(checkpoint.tensorNames());
            unread.removeAll(checkpoint.lookedUp);
            assertEquals(Set.of(), unread, "tensors the DeepSeek model does not load");

            int[] tokens = {0, 17, 123, 399, 42};
            float[][] logits;
            try (KvCache cache = model.allocateKvCache(1, 16)) {
                logits = new SequenceRunner(model, cache, new int[] {0}).score(tokens);
            }
            assertEquals(tokens.length, logits.length);
            for (float[] row : logits) {
                assertEquals(vocab, row.length);
                for (float v : row) assertTrue(Float.isFinite(v), "non-finite logit");
            }
        }
    }

    /** DeepSeek-V2-Lite's configuration (YaRN, routing and all) at the sizes of the small hub-layout fixture. */
    private static Map<String, Object> deepseekV2LiteAtFixtureSizes() throws IOException {
        @SuppressWarnings("unchecked")
        Map<String, Object> fixture = new Gson().fromJson(
                Files.readString(fixtureFolder().resolve("config.json"), StandardCharsets.UTF_8), Map.class);
        Map<String, Object> sizes = new LinkedHashMap<>();
        for (String field : DEEPSEEK_SIZE_FIELDS) {
            sizes.put(field, ((Number) Objects.requireNonNull(fixture.get(field), field)).intValue());
        }
        return SyntheticModels.DEEPSEEK_V2_LITE.configWith(sizes);
    }

    private static Path fixtureFolder() {
        String root = Objects.requireNonNull(System.getProperty("kiln.fixtures"),
                "system property kiln.fixtures must name the fixtures folder");
        return Path.of(root, "models", DEEPSEEK_FIXTURE);
    }

    /** A checkpoint that remembers every tensor name it was asked for, present or not. */
    private static final class RecordingCheckpoint implements Checkpoint {
        private final Checkpoint delegate;
        final Set<String> lookedUp = new HashSet<>();

        RecordingCheckpoint(Checkpoint delegate) {
            this.delegate = delegate;
        }

        @Override
        public Path location() {
            return delegate.location();
        }

        @Override
        public ModelConfig config() {
            return delegate.config();
        }

        @Override
        public Set<String> tensorNames() {
            return delegate.tensorNames();
        }

        @Override
        public Optional<CheckpointTensor> find(String name) {
            lookedUp.add(name);
            return delegate.find(name);
        }

        @Override
        public long dataBytes() {
            return delegate.dataBytes();
        }

        @Override
        public void close() {
            delegate.close();
        }
    }
}
