package dev.kiln.api.tensor;

import java.util.Optional;

/**
 * Element types of tensors in checkpoints and on backends, named as in the safetensors format.
 */
public enum DType {
    F64(8), F32(4), F16(2), BF16(2), F8_E4M3(1), F8_E5M2(1), I64(8), I32(4), I16(2), I8(1), U8(1), BOOL(1);

    private final int byteSize;

    DType(int byteSize) {
        this.byteSize = byteSize;
    }

    /** Bytes one element occupies. */
    public int byteSize() {
        return byteSize;
    }

    /** Whether the type holds real numbers (as opposed to integers or booleans). */
    public boolean isFloatingPoint() {
        return switch (this) {
            case F64, F32, F16, BF16, F8_E4M3, F8_E5M2 -> true;
            default -> false;
        };
    }

    /** The type for a safetensors dtype string, or empty when the string names no known type. */
    public static Optional<DType> fromSafetensors(String name) {
        for (DType t : values()) {
            if (t.name().equals(name)) return Optional.of(t);
        }
        return Optional.empty();
    }
}
