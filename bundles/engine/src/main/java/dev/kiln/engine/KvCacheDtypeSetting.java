package dev.kiln.engine;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.tensor.DType;
import java.util.Locale;

/**
 * The engine's {@code kv-cache-dtype} setting: which element type the model's paged KV cache stores. Keys and values
 * are computed in f32 either way; a bf16 cache rounds them (to nearest even) when they are stored, which halves the
 * bytes per token (twice the tokens in the same {@code kv-cache-memory}) and the bytes attention reads per step.
 *
 * <ul>
 *   <li>{@link #AUTO} (the default): bf16 on the {@code cuda} backend, f32 on every other one;</li>
 *   <li>{@link #F32}: f32 everywhere (the exact cache: attention sees what the model computed);</li>
 *   <li>{@link #BF16}: bf16; refused on the {@code cpu} backend, whose attention kernel keeps f32 only.</li>
 * </ul>
 */
public enum KvCacheDtypeSetting {
    AUTO, F32, BF16;

    /** The configuration property (Config Admin PID {@code dev.kiln.engine}) and the name used in messages. */
    public static final String PROPERTY = "kv-cache-dtype";
    /** The framework property {@code kiln serve --kv-cache-dtype} sets; a configured value wins over it. */
    public static final String FRAMEWORK_PROPERTY = "kiln." + PROPERTY;

    /**
     * The setting named by {@code value}: {@code auto}, {@code f32} or {@code bf16} in any case; {@code null} or
     * blank is {@link #AUTO}.
     *
     * @throws IllegalArgumentException naming the setting and the accepted values for anything else
     */
    public static KvCacheDtypeSetting parse(String value) {
        if (value == null || value.isBlank()) return AUTO;
        return switch (value.strip().toLowerCase(Locale.ROOT)) {
            case "auto" -> AUTO;
            case "f32" -> F32;
            case "bf16" -> BF16;
            default -> throw new IllegalArgumentException(PROPERTY + " must be auto, f32 or bf16, found '" + value.strip() + "'");
        };
    }

    /**
     * The element type for a model on {@code backend}.
     *
     * @throws IllegalArgumentException when bf16 is asked for on the {@code cpu} backend
     */
    public DType resolve(ComputeBackend backend) {
        return resolve(backend.name());
    }

    /** {@link #resolve(ComputeBackend)} by the backend's {@link ComputeBackend#name() name}. */
    public DType resolve(String backendName) {
        return switch (this) {
            case AUTO -> "cuda".equals(backendName) ? DType.BF16 : DType.F32;
            case F32 -> DType.F32;
            case BF16 -> {
                if ("cpu".equals(backendName)) {
                    throw new IllegalArgumentException(PROPERTY + " bf16 is not available on the cpu backend (its "
                            + "attention kernel keeps the KV cache in f32): set " + PROPERTY + " to auto or f32, or "
                            + "serve from the cuda backend");
                }
                yield DType.BF16;
            }
        };
    }

    /** The setting as written in configuration: {@code auto}, {@code f32} or {@code bf16}. */
    @Override
    public String toString() {
        return name().toLowerCase(Locale.ROOT);
    }
}
