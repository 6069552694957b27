package dev.kiln.loader.safetensors;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Element decoding written out from the format definitions, independently of {@link TensorValues}, to check it.
 */
final class HandDecoding {
    private HandDecoding() {}

    static float[] decode(String dtype, byte[] data) {
        ByteBuffer in = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        return switch (dtype) {
            case "F32" -> {
                float[] out = new float[data.length / 4];
                for (int i = 0; i < out.length; i++) out[i] = in.getFloat(4 * i);
                yield out;
            }
            case "BF16" -> {
                float[] out = new float[data.length / 2];
                for (int i = 0; i < out.length; i++) {
                    int bits = (data[2 * i] & 0xFF) | (data[2 * i + 1] & 0xFF) << 8;
                    out[i] = Float.intBitsToFloat(bits << 16);
                }
                yield out;
            }
            case "F16" -> {
                float[] out = new float[data.length / 2];
                for (int i = 0; i < out.length; i++) out[i] = half((data[2 * i] & 0xFF) | (data[2 * i + 1] & 0xFF) << 8);
                yield out;
            }
            case "F8_E4M3" -> {
                float[] out = new float[data.length];
                for (int i = 0; i < out.length; i++) out[i] = e4m3(data[i] & 0xFF);
                yield out;
            }
            default -> throw new IllegalArgumentException(dtype);
        };
    }

    static long[] decodeIntegers(String dtype, byte[] data) {
        ByteBuffer in = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        return switch (dtype) {
            case "I64" -> {
                long[] out = new long[data.length / 8];
                for (int i = 0; i < out.length; i++) out[i] = in.getLong(8 * i);
                yield out;
            }
            case "I32" -> {
                long[] out = new long[data.length / 4];
                for (int i = 0; i < out.length; i++) out[i] = in.getInt(4 * i);
                yield out;
            }
            default -> throw new IllegalArgumentException(dtype);
        };
    }

    /** IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
    static float half(int bits) {
        double sign = (bits & 0x8000) != 0 ? -1 : 1;
        int exponent = (bits >> 10) & 0x1F;
        int mantissa = bits & 0x3FF;
        if (exponent == 0x1F) return mantissa == 0 ? (float) (sign * Double.POSITIVE_INFINITY) : Float.NaN;
        if (exponent == 0) return (float) (sign * mantissa / 1024.0 * Math.pow(2, -14));
        return (float) (sign * (1 + mantissa / 1024.0) * Math.pow(2, exponent - 15));
    }

    /** E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities; all ones is NaN. */
    static float e4m3(int bits) {
        double sign = (bits & 0x80) != 0 ? -1 : 1;
        int exponent = (bits >> 3) & 0xF;
        int mantissa = bits & 0x7;
        if (exponent == 0xF && mantissa == 0x7) return Float.NaN;
        if (exponent == 0) return (float) (sign * mantissa / 8.0 * Math.pow(2, -6));
        return (float) (sign * (1 + mantissa / 8.0) * Math.pow(2, exponent - 7));
    }

    /** E5M2: 1 sign, 5 exponent (bias 15), 2 mantissa bits; IEEE-style infinities and NaNs. */
    static float e5m2(int bits) {
        double sign = (bits & 0x80) != 0 ? -1 : 1;
        int exponent = (bits >> 2) & 0x1F;
        int mantissa = bits & 0x3;
        if (exponent == 0x1F) return mantissa == 0 ? (float) (sign * Double.POSITIVE_INFINITY) : Float.NaN;
        if (exponent == 0) return (float) (sign * mantissa / 4.0 * Math.pow(2, -14));
        return (float) (sign * (1 + mantissa / 4.0) * Math.pow(2, exponent - 15));
    }
}
