package dev.kiln.models;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.RotaryEmbedding;
import dev.kiln.api.model.RopeParameters;

/**
 * The inverse frequencies of a rotary position embedding after the checkpoint's scaling rule, and the magnitude
 * applied to cos and sin, ready for {@link ComputeBackend#rotaryEmbedding}.
 *
 * <p>Supported {@code rope_type}s, computed exactly as Hugging Face transformers does (in double precision, rounded
 * to float once at the end):
 * <ul>
 *   <li>{@code default}: {@code 1 / theta^(2i/d)};</li>
 *   <li>{@code linear}: the default divided by {@code factor};</li>
 *   <li>{@code llama3}: long wavelengths divided by {@code factor}, short ones kept, a smooth blend between
 *       ({@code low_freq_factor}, {@code high_freq_factor}, {@code original_max_position_embeddings});</li>
 *   <li>{@code yarn}: interpolation and extrapolation blended by a linear ramp between the correction dimensions of
 *       {@code beta_fast} and {@code beta_slow}, with the attention factor ({@code attention_factor}, or derived
 *       from {@code mscale} and {@code mscale_all_dim}) as magnitude.</li>
 * </ul>
 * Position-dependent schemes ({@code dynamic}, {@code longrope}) are refused: they change the frequencies with the
 * sequence length, which a paged cache of already-rotated keys cannot follow.
 *
 * @param inverseFrequencies one frequency per rotated pair ({@code rotaryDim / 2})
 * @param magnitude          factor on cos and sin (YaRN's attention factor; 1 otherwise)
 */
public record RotaryFrequencies(float[] inverseFrequencies, float magnitude) {

    /**
     * Frequencies for a rotary part of {@code rotaryDim} elements per head.
     *
     * @throws dev.kiln.api.checkpoint.InvalidCheckpointException naming the configuration field when the scaling
     *                                                            type is unsupported or a parameter is missing
     */
    public static RotaryFrequencies of(RopeParameters rope, int rotaryDim) {
        if (rotaryDim <= 0 || rotaryDim % 2 != 0) {
            throw rope.config().invalid("head_dim", "the rotary part must have a positive even size, found " + rotaryDim);
        }
        double[] base = defaultFrequencies(rope.theta(), rotaryDim);
        return switch (rope.type()) {
            case "default" -> new RotaryFrequencies(toFloat(base), 1f);
            case "linear" -> new RotaryFrequencies(toFloat(linear(base, rope.getDouble("factor"))), 1f);
            case "llama3" -> new RotaryFrequencies(toFloat(llama3(base, rope)), 1f);
            case "yarn" -> yarn(base, rope, rotaryDim);
            default -> throw rope.config().invalid("rope_scaling.rope_type",
                    "'" + rope.type() + "' is not supported (supported: default, linear, llama3, yarn)");
        };
    }

    /** Creates the backend's rotary embedding for these frequencies. */
    public RotaryEmbedding on(ComputeBackend backend, RotaryEmbedding.Layout layout) {
        return backend.rotaryEmbedding(inverseFrequencies.clone(), magnitude, layout);
    }

    /** Elements rotated per head. */
    public int rotaryDim() {
        return 2 * inverseFrequencies.length;
    }

    /**
     * YaRN's magnitude correction {@code 0.1 · m · ln(factor) + 1} (1 when the factor does not extend the
     * context). DeepSeek also multiplies its softmax scale by the square of this with {@code m = mscale_all_dim}.
     */
    public static double yarnMscale(double factor, double m) {
        return factor <= 1 ? 1.0 : 0.1 * m * Math.log(factor) + 1.0;
    }

    private static double[] defaultFrequencies(double theta, int dim) {
        double[] inv = new double[dim / 2];
        for (int i = 0; i < inv.length; i++) inv[i] = 1.0 / Math.pow(theta, (2.0 * i) / dim);
        return inv;
    }

    private static double[] linear(double[] base, double factor) {
        double[] inv = new double[base.length];
        for (int i = 0; i < inv.length; i++) inv[i] = base[i] / factor;
        return inv;
    }

    private static double[] llama3(double[] base, RopeParameters rope) {
        double factor = rope.getDouble("factor");
        double lowFreqFactor = rope.getDouble("low_freq_factor");
        double highFreqFactor = rope.getDouble("high_freq_factor");
        double originalContext = rope.getDouble("original_max_position_embeddings");
        double lowFreqWavelength = originalContext / lowFreqFactor;
        double highFreqWavelength = originalContext / highFreqFactor;
        double[] inv = new double[base.length];
        for (int i = 0; i < inv.length; i++) {
            double wavelength = 2 * Math.PI / base[i];
            if (wavelength < highFreqWavelength) {
                inv[i] = base[i];
            } else if (wavelength > lowFreqWavelength) {
                inv[i] = base[i] / factor;
            } else {
                double smooth = (originalContext / wavelength - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                inv[i] = (1 - smooth) * base[i] / factor + smooth * base[i];
            }
        }
        return inv;
    }

    private static RotaryFrequencies yarn(double[] extrapolation, RopeParameters rope, int dim) {
        double factor = rope.getDouble("factor");
        double theta = rope.theta();
        double originalContext = rope.getDouble("original_max_position_embeddings",
                rope.config().maxPositionEmbeddings());
        double betaFast = rope.getDouble("beta_fast", 32);
        double betaSlow = rope.getDouble("beta_slow", 1);
        boolean truncate = !Boolean.FALSE.equals(rope.params().get("truncate"));

        double low = correctionDim(betaFast, dim, theta, originalContext);
        double high = correctionDim(betaSlow, dim, theta, originalContext);
        if (truncate) {
            low = Math.floor(low);
            high = Math.ceil(high);
        }
        low = Math.max(low, 0);
        high = Math.min(high, dim - 1);
        if (low == high) high += 0.001; // the reference's guard against a zero-width ramp

        double[] inv = new double[extrapolation.length];
        for (int i = 0; i < inv.length; i++) {
            double ramp = Math.clamp((i - low) / (high - low), 0.0, 1.0);
            double extrapolationWeight = 1 - ramp;
            double interpolation = extrapolation[i] / factor;
            inv[i] = interpolation * (1 - extrapolationWeight) + extrapolation[i] * extrapolationWeight;
        }

        double attentionFactor;
        if (rope.params().containsKey("attention_factor")) {
            attentionFactor = rope.getDouble("attention_factor");
        } else {
            double mscale = rope.getDouble("mscale", 1);
            double mscaleAllDim = rope.getDouble("mscale_all_dim", 0);
            attentionFactor = mscaleAllDim != 0
                    ? yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAllDim)
                    : yarnMscale(factor, mscale);
        }
        return new RotaryFrequencies(toFloat(inv), (float) attentionFactor);
    }

    /** The dimension whose wavelength completes {@code rotations} turns over the original context. */
    private static double correctionDim(double rotations, int dim, double theta, double originalContext) {
        return dim * Math.log(originalContext / (rotations * 2 * Math.PI)) / (2 * Math.log(theta));
    }

    private static float[] toFloat(double[] values) {
        float[] out = new float[values.length];
        for (int i = 0; i < out.length; i++) out[i] = (float) values[i];
        return out;
    }
}
