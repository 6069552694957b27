package dev.kiln.backend.cuda.quant;

/**
 * The {@code weight_only_int4} rule, the CPU bundle's {@code GroupQuantization} operation for operation: in each group
 * of consecutive columns the element of largest magnitude {@code m} (the first of equal magnitudes) becomes -8 exactly
 * ({@code d = m / -8} in f32) and every element becomes {@code q = clamp(round(w / d), -8, 7)}, ties to even, computed
 * in double, stored as {@code u = q + 8}. The last group of a row may be partial; a group of zeros gets scale 0.
 */
public final class GroupQuantization {
    private GroupQuantization() {}

    /**
     * Quantizes one row: codes {@code u} (0..15) into {@code codes}, one scale per group into {@code scales}.
     *
     * @throws IllegalArgumentException when the row holds a value that is not finite
     */
    public static void quantizeRow(float[] values, int groupSize, byte[] codes, float[] scales) {
        for (int g = 0, from = 0; from < values.length; g++, from += groupSize) {
            int to = Math.min(values.length, from + groupSize);
            float extreme = 0;
            for (int c = from; c < to; c++) {
                float v = values[c];
                if (!Float.isFinite(v)) throw new IllegalArgumentException("holds a non-finite value " + v);
                if (Math.abs(v) > Math.abs(extreme)) extreme = v;
            }
            float scale = extreme / -8f;
            scales[g] = scale;
            for (int c = from; c < to; c++) {
                double q = scale == 0 ? 0 : Math.rint(values[c] / (double) scale);
                codes[c] = (byte) (Math.max(-8, Math.min(7, q)) + 8);
            }
        }
    }
}
