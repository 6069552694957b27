package dev.kiln.quant.testing;

import dev.kiln.api.tokenizer.Tokenizer;
import dev.kiln.tokenizer.BpeTokenizerFactory;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Objects;

/**
 * What quantization costs a model's predictions: perplexity of a text, and how often two models agree on the most
 * likely next token. The text is {@code held-out.txt}, English prose written for these tests (so no model was trained
 * on it).
 */
public final class Quality {
    private Quality() {}

    /** The held-out text encoded with the tokenizer of the model folder (no special tokens added). */
    public static int[] heldOutTokens(Path modelFolder) {
        try (InputStream in = Objects.requireNonNull(Quality.class.getResourceAsStream("held-out.txt"), "held-out.txt")) {
            String text = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            Tokenizer tokenizer = new BpeTokenizerFactory().load(modelFolder);
            return tokenizer.encode(text, false);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * {@code exp} of the mean negative log-likelihood of {@code tokens[1..]}, each predicted by the logits after the
     * token before it ({@code logits[t]} predicts {@code tokens[t + 1]}).
     */
    public static double perplexity(float[][] logits, int[] tokens) {
        double nll = 0;
        for (int t = 0; t + 1 < tokens.length; t++) {
            float[] row = logits[t];
            double max = Double.NEGATIVE_INFINITY;
            for (float v : row) max = Math.max(max, v);
            double sum = 0;
            for (float v : row) sum += Math.exp(v - max);
            nll += Math.log(sum) + max - row[tokens[t + 1]];
        }
        return Math.exp(nll / (tokens.length - 1));
    }

    /** The fraction of positions where both sets of logits have the same largest entry. */
    public static double top1Agreement(float[][] a, float[][] b) {
        int same = 0;
        for (int t = 0; t < a.length; t++) if (argmax(a[t]) == argmax(b[t])) same++;
        return (double) same / a.length;
    }

    /** The index of the largest value, the first on ties. */
    public static int argmax(float[] values) {
        int best = 0;
        for (int i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    /** The largest {@code |a - b|} over all positions. */
    public static double maxAbsDiff(float[][] actual, double[][] expected) {
        double max = 0;
        for (int t = 0; t < actual.length; t++) {
            for (int i = 0; i < actual[t].length; i++) {
                double d = Math.abs(actual[t][i] - expected[t][i]);
                if (!(d <= max)) max = d;
            }
        }
        return max;
    }

    /** The largest {@code |v|}. */
    public static double maxAbs(double[][] values) {
        double max = 0;
        for (double[] row : values) for (double v : row) max = Math.max(max, Math.abs(v));
        return max;
    }
}
