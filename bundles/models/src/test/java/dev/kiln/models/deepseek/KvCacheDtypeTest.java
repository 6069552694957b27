package dev.kiln.models.deepseek;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.attention.AttentionMetadata;
import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ModelBuildOptions;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.models.testing.EditedCheckpoint;
import dev.kiln.models.testing.Harness;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The KV cache element type of {@link ModelBuildOptions} reaches every cache spec a model makes: the Llama family's,
 * DeepSeek's latent cache, its MTP module's and the expanded-attention scratch cache. Built on the CPU backend with a
 * kernel that claims bf16 support (the CPU kernel itself keeps f32 only, and refuses bf16).
 */
class KvCacheDtypeTest {
    /** Accepts what the CPU kernel accepts in f32, in bf16 as well; records every spec it is asked about. */
    private static final class Bf16Claiming implements AttentionKernel {
        final List<KvCacheSpec> asked = new ArrayList<>();

        @Override
        public boolean supports(KvCacheSpec spec, ComputeBackend backend) {
            asked.add(spec);
            var f32 = new KvCacheSpec(spec.layers(), spec.kvHeads(), spec.keyDim(), spec.valueDim(), spec.valuesInKeys(),
                    DType.F32);
            return spec.dtype() == DType.BF16 && Harness.attention().supports(f32, backend);
        }

        @Override
        public KvCache allocate(KvCacheSpec spec, int numBlocks, int blockSize, ComputeBackend backend) {
            throw new UnsupportedOperationException("specs only");
        }

        @Override
        public void forward(int layer, Tensor query, Tensor key, Tensor value, Tensor out, float scale, KvCache cache,
                            AttentionMetadata batch) {
            throw new UnsupportedOperationException("specs only");
        }
    }

    @Test
    void theOptionsDefaultToTheArchitecturesF32AndAcceptOnlyF32OrBf16() {
        var options = new ModelBuildOptions(Harness.backend(), Harness.attention(), null, 8);
        assertNull(options.kvCacheDtype());
        assertEquals(DType.F32, options.kvCacheDtypeOr(DType.F32));
        assertEquals(options, new ModelBuildOptions(Harness.backend(), Harness.attention(), null, 8, null));
        assertEquals(DType.BF16,
                new ModelBuildOptions(Harness.backend(), Harness.attention(), null, 8, DType.BF16).kvCacheDtypeOr(DType.F32));
        for (DType other : new DType[] {DType.F16, DType.F8_E4M3, DType.F64, DType.I8}) {
            var e = assertThrows(IllegalArgumentException.class,
                    () -> new ModelBuildOptions(Harness.backend(), Harness.attention(), null, 8, other));
            assertTrue(e.getMessage().contains(other.name()), e.getMessage());
        }
    }

    @Test
    void aLlamaFamilyModelStoresTheChosenType() {
        var kernel = new Bf16Claiming();
        try (CausalLanguageModel model = Harness.build(Harness.open("llama3-tiny"), kernel, DType.BF16, 16)) {
            assertEquals(new KvCacheSpec(2, 2, 16, 16, false, DType.BF16), model.kvCacheSpec());
            assertEquals(2L * 2 * (16 + 16) * 2, model.kvCacheSpec().bytesPerToken());
        }
        try (CausalLanguageModel model = Harness.build(Harness.open("llama3-tiny"), Harness.attention(), DType.F32, 16);
             CausalLanguageModel byDefault = Harness.build("llama3-tiny", 16)) {
            assertEquals(byDefault.kvCacheSpec(), model.kvCacheSpec());
            assertEquals(DType.F32, model.kvCacheSpec().dtype());
        }
    }

    @Test
    void deepSeeksLatentMtpAndExpandedCachesAllStoreTheChosenType() {
        var kernel = new Bf16Claiming();
        try (CausalLanguageModel model = Harness.build(Harness.open("deepseek-v3-tiny"), kernel, DType.BF16, 16)) {
            KvCacheSpec latent = model.kvCacheSpec();
            assertEquals(new KvCacheSpec(3, 1, 64 + 16, 64, true, DType.BF16), latent);
            assertEquals(3L * 80 * 2, latent.bytesPerToken());
            assertEquals(DType.BF16, MtpHead.of(model).orElseThrow().kvCacheSpec().dtype());
            // The expanded path's scratch cache: 4 heads of nope 32 + rope 16 keys and 32-wide values.
            assertTrue(kernel.asked.contains(new KvCacheSpec(1, 4, 48, 32, false, DType.BF16)), kernel.asked.toString());
            assertTrue(kernel.asked.stream().allMatch(s -> s.dtype() == DType.BF16), kernel.asked.toString());
        }
    }

    @Test
    void aKernelWithoutBf16RefusesTheModelAndTheCheckpointIsClosed() {
        for (String fixture : new String[] {"qwen2-tiny", "deepseek-v3-tiny"}) {
            var checkpoint = new EditedCheckpoint(Harness.open(fixture));
            var e = assertThrows(IllegalArgumentException.class,
                    () -> Harness.build(checkpoint, Harness.attention(), DType.BF16, 16));
            assertTrue(e.getMessage().contains("BF16"), e.getMessage());
            assertTrue(checkpoint.closed(), fixture + ": the model owned the checkpoint and closed it on failure");
        }
    }
}
