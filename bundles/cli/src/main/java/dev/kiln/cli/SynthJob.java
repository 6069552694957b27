package dev.kiln.cli;

import com.google.gson.GsonBuilder;
import dev.kiln.api.tensor.DType;
import dev.kiln.loader.safetensors.SafetensorsWriter;
import dev.kiln.loader.safetensors.SafetensorsWriter.TensorSpec;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.Function;
import org.osgi.service.component.annotations.Component;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code kiln synth}: writes a checkpoint with random bf16 weights and exactly a hub model's configuration and
 * tensor shapes, for benchmarks without downloads. Weights are uniform with the standard deviation of the models'
 * initialisation (0.02), norms are 1, biases 0; shards of at most {@value #SHARD_BYTES} bytes with an index, as the
 * hub lays out large models.
 */
@Component(service = Function.class, property = CommandJob.COMMAND + "=synth")
public final class SynthJob extends CommandJob {
    static final long SHARD_BYTES = 4L << 30;

    @Override
    protected Object newCommand() {
        return new Synth();
    }

    @Command(name = "synth", mixinStandardHelpOptions = true,
            description = "Write a random-weight checkpoint with a real model's config and tensor shapes (bf16).")
    static final class Synth implements Callable<Integer> {
        @Option(names = "--like", required = true,
                description = "r1-distill-qwen-1.5b, r1-distill-qwen-7b, r1-distill-llama-8b or deepseek-v2-lite "
                        + "(DeepSeek-V2-Lite-Chat).")
        String like;

        @Option(names = "--out", required = true, description = "Folder to create (must not exist or be empty).")
        Path out;

        @Option(names = "--seed", defaultValue = "1", description = "Random seed (default: ${DEFAULT-VALUE}).")
        long seed;

        @Override
        public Integer call() throws IOException {
            SyntheticModels model = SyntheticModels.byId(like);
            if (Files.exists(out) && (!Files.isDirectory(out) || Files.list(out).findAny().isPresent())) {
                throw new IllegalArgumentException(out + " exists and is not an empty folder");
            }
            Files.createDirectories(out);
            long t0 = System.nanoTime();
            long total = write(model.config, out, seed);
            System.out.printf("wrote %s (%s shapes, %.2f GB of bf16 weights) in %.1f s%n", out, model.id, total / 1e9,
                    (System.nanoTime() - t0) / 1e9);
            return 0;
        }
    }

    /**
     * Writes config.json and the weights of the layout that the configuration (one of {@link SyntheticModels}'s,
     * possibly resized) describes; returns the bytes of tensor data.
     */
    static long write(Map<String, Object> config, Path out, long seed) throws IOException {
        return write(config, out, seed, SHARD_BYTES);
    }

    /** As {@link #write(Map, Path, long)}, with shards of at most {@code shardBytes} (unless one tensor is larger). */
    static long write(Map<String, Object> config, Path out, long seed, long shardBytes) throws IOException {
        // Null fields are kept: the hub writes them (DeepSeek-V2-Lite's q_lora_rank) and readers treat them as absent.
        Files.writeString(out.resolve("config.json"),
                new GsonBuilder().setPrettyPrinting().serializeNulls().create().toJson(config), StandardCharsets.UTF_8);
        List<Map<String, TensorSpec>> shards = new ArrayList<>();
        Map<String, TensorSpec> current = new LinkedHashMap<>();
        long currentBytes = 0;
        long total = 0;
        int index = 0;
        for (Map.Entry<String, long[]> e : SyntheticModels.tensorShapes(config).entrySet()) {
            String name = e.getKey();
            long[] shape = e.getValue();
            long bytes = 2;
            for (long d : shape) bytes *= d;
            if (currentBytes > 0 && currentBytes + bytes > shardBytes) {
                shards.add(current);
                current = new LinkedHashMap<>();
                currentBytes = 0;
            }
            current.put(name, TensorSpec.generated(DType.BF16, shape, source(name, shape, seed + index++)));
            currentBytes += bytes;
            total += bytes;
        }
        shards.add(current);
        if (shards.size() == 1) {
            SafetensorsWriter.write(out.resolve("model.safetensors"), shards.getFirst());
            return total;
        }
        Map<String, String> weightMap = new LinkedHashMap<>();
        for (int s = 0; s < shards.size(); s++) {
            String file = String.format("model-%05d-of-%05d.safetensors", s + 1, shards.size());
            SafetensorsWriter.write(out.resolve(file), shards.get(s));
            for (String name : shards.get(s).keySet()) weightMap.put(name, file);
        }
        Map<String, Object> indexJson = new LinkedHashMap<>();
        indexJson.put("metadata", Map.of("total_size", total));
        indexJson.put("weight_map", weightMap);
        Files.writeString(out.resolve("model.safetensors.index.json"),
                new GsonBuilder().setPrettyPrinting().create().toJson(indexJson), StandardCharsets.UTF_8);
        return total;
    }

    private static SafetensorsWriter.ByteSource source(String name, long[] shape, long seed) {
        short one = (short) (Float.floatToRawIntBits(1f) >>> 16);
        if (name.endsWith("norm.weight")) return (offset, chunk) -> {
            while (chunk.remaining() >= 2) chunk.putShort(one);
        };
        if (name.endsWith(".bias")) return (offset, chunk) -> {
            while (chunk.hasRemaining()) chunk.put((byte) 0);
        };
        // Uniform on [-a, a] has standard deviation a/sqrt(3): a = 0.02 * sqrt(3) matches the usual initialisation.
        float a = (float) (0.02 * Math.sqrt(3));
        return (offset, chunk) -> fillUniformBf16(chunk, seed ^ (offset * 0x9E3779B97F4A7C15L), a);
    }

    /** Fills with bf16 values uniform on [-a, a] from a SplitMix64 stream, four values per 64-bit draw. */
    static void fillUniformBf16(ByteBuffer chunk, long state, float a) {
        float scale = a / 32768f;
        while (chunk.remaining() >= 8) {
            state += 0x9E3779B97F4A7C15L;
            long z = state;
            z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
            z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
            z ^= z >>> 31;
            for (int k = 0; k < 4; k++) {
                float v = (short) (z >>> (16 * k)) * scale;
                chunk.putShort((short) (Float.floatToRawIntBits(v) >>> 16));
            }
        }
        while (chunk.remaining() >= 2) chunk.putShort((short) 0);
    }
}
