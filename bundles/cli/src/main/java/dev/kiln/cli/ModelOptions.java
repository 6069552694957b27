package dev.kiln.cli;

import dev.kiln.api.attention.AttentionKernel;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.engine.KvCacheDtypeSetting;
import java.io.IOException;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/**
 * The options every job that loads a model shares: which model, on which backend, kernel, weight format and KV cache
 * element type (the engine's {@code kv-cache-dtype}).
 */
final class ModelOptions {
    @Option(names = "--model", required = true, description = "Model folder (config.json + safetensors; `kiln synth` writes benchmark shapes).")
    Path model;

    @Option(names = "--threads", defaultValue = "0", description = "CPU worker threads (default: physical cores).")
    int threads;

    @Option(names = "--backend", defaultValue = "cpu", description = "Compute backend (default: ${DEFAULT-VALUE}).")
    String backendName;

    @Option(names = "--attention", defaultValue = "paged", description = "Attention kernel (default: ${DEFAULT-VALUE}).")
    String attentionName;

    @Option(names = "--quantization", description = "Weight format to quantize to on load (e.g. fp8); default: the checkpoint's own.")
    String quantization;

    @Option(names = "--kv-cache-dtype", defaultValue = "auto",
            description = "KV cache element type: auto (bf16 on cuda, f32 elsewhere), f32 or bf16 (default: ${DEFAULT-VALUE}).")
    String kvCacheDtype;

    /** The chosen backend, reconfigured to {@code --threads} when given. */
    ComputeBackend backend(KilnServices services) throws IOException, InterruptedException {
        return services.backend(backendName, threads);
    }

    /** Loads the model on the backend with the chosen attention kernel, weight format and KV cache element type. */
    CausalLanguageModel load(KilnServices services, ComputeBackend backend, int maxBatchTokens)
            throws IOException, InterruptedException {
        KvCacheDtypeSetting cacheType = KvCacheDtypeSetting.parse(kvCacheDtype);
        AttentionKernel attention = services.attention(attentionName, backend);
        return services.loadModel(model, backend, attention, quantization, maxBatchTokens, cacheType);
    }
}
