package dev.kiln.sampler;

import dev.kiln.api.sampling.SamplingParams;
import java.util.Arrays;
import java.util.Comparator;
import java.util.stream.IntStream;

/**
 * The truncated distribution computed the obvious way, by sorting the whole vocabulary (vLLM's reference
 * implementation): softmax of logits / T, min-p against the top probability, top-k, then top-p over the
 * renormalised rest. The sampler must agree with it without sorting.
 */
final class SortingReference {
    private SortingReference() {}

    static double[] probabilities(float[] logits, SamplingParams params) {
        int vocab = logits.length;
        double[] p = new double[vocab];
        double max = Double.NEGATIVE_INFINITY;
        for (float l : logits) max = Math.max(max, l);
        double sum = 0;
        for (int i = 0; i < vocab; i++) {
            p[i] = Math.exp((logits[i] - max) / params.temperature());
            sum += p[i];
        }
        double top = 0;
        for (int i = 0; i < vocab; i++) {
            p[i] /= sum;
            top = Math.max(top, p[i]);
        }
        double floor = params.minP() * top;
        Integer[] order = IntStream.range(0, vocab).boxed()
                .filter(i -> p[i] >= floor && logits[i] != Float.NEGATIVE_INFINITY)
                .sorted(Comparator.<Integer>comparingDouble(i -> -logits[i]).thenComparingInt(i -> i))
                .toArray(Integer[]::new);
        int kept = params.topK() > 0 ? Math.min(params.topK(), order.length) : order.length;
        double keptMass = 0;
        for (int r = 0; r < kept; r++) keptMass += p[order[r]];
        if (params.topP() < 1) {
            double above = 0;
            int r = 0;
            while (r < kept && above / keptMass < params.topP()) above += p[order[r++]];
            kept = r;
            keptMass = above;
        }
        double[] out = new double[vocab];
        for (int r = 0; r < kept; r++) out[order[r]] = p[order[r]] / keptMass;
        return out;
    }

    /** Indices with non-zero probability, ascending. */
    static int[] support(double[] probabilities) {
        return IntStream.range(0, probabilities.length).filter(i -> probabilities[i] > 0).toArray();
    }

    static int[] support(float[] probabilities) {
        return IntStream.range(0, probabilities.length).filter(i -> probabilities[i] > 0).toArray();
    }

    static String describe(int[] support) {
        return Arrays.toString(support);
    }
}
