package dev.kiln.backend.cuda.quant;

/**
 * The {@code weight_only_int8} rule, the CPU bundle's {@code ChannelQuantization} operation for operation: each row's
 * largest magnitude maps to 127 ({@code s = amax / 127} in f32) and every element becomes {@code q = round(w / s)},
 * ties to even, computed in double, clamped to ±127. A row of zeros gets scale 0 and codes 0. Equal rules give equal
 * codes and scales, hence the same model on the CPU and on the device up to the order of float sums.
 */
public final class ChannelQuantization {
    /** The largest code: -127..127, symmetric (-128 unused). */
    public static final int MAX_CODE = 127;

    private ChannelQuantization() {}

    /**
     * Quantizes one row into {@code codes} (its first {@code values.length} entries) and returns its scale.
     *
     * @throws IllegalArgumentException when the row holds a value that is not finite
     */
    public static float quantizeRow(float[] values, byte[] codes) {
        float amax = 0;
        for (float v : values) {
            if (!Float.isFinite(v)) throw new IllegalArgumentException("holds a non-finite value " + v);
            amax = Math.max(amax, Math.abs(v));
        }
        float scale = amax / MAX_CODE;
        for (int c = 0; c < values.length; c++) {
            double q = scale == 0 ? 0 : Math.rint(values[c] / (double) scale);
            codes[c] = (byte) Math.max(-MAX_CODE, Math.min(MAX_CODE, q));
        }
        return scale;
    }
}
