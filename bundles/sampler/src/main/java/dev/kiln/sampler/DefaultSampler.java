package dev.kiln.sampler;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.sampling.Sampler;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.api.sampling.SequenceView;
import java.util.Arrays;
import java.util.random.RandomGenerator;
import org.osgi.service.component.annotations.Component;

/**
 * The standard sampler, with vLLM's semantics and order of operations:
 *
 * <ol>
 *   <li>temperature 0: the most likely token (the lowest id among equal maxima), no randomness consumed;</li>
 *   <li>otherwise logits are divided by the temperature, then</li>
 *   <li>min-p drops tokens whose probability is below {@code minP} times the top token's,</li>
 *   <li>top-k keeps the k most likely of the rest,</li>
 *   <li>top-p keeps the most likely of those until their renormalised mass reaches {@code topP},</li>
 *   <li>one token is drawn from what remains, renormalised, with a single {@code nextDouble()} of the request's
 *       random stream.</li>
 * </ol>
 *
 * <p>No step sorts the vocabulary: truncation is done by partial selection in expected linear time (see
 * {@link CandidateSet}), which matters at 150k-token vocabularies. Tokens whose logit is negative infinity
 * (masked by a logits processor) are never drawn. Working arrays are kept per calling thread and reused.
 */
@Component(service = Sampler.class, property = {KilnProperties.NAME + "=default"})
public final class DefaultSampler implements Sampler {
    /** Up to this k, top-k is a heap pass over the row; above it, a quickselect over a copy. */
    private static final int HEAP_SELECTION_LIMIT = 1024;

    // Per instance, not static: when this bundle is updated the old instance and its buffers can be collected.
    private final ThreadLocal<CandidateSet> candidates = ThreadLocal.withInitial(CandidateSet::new);

    /** A sampler; it keeps no state besides per-thread working arrays. */
    public DefaultSampler() {}

    @Override
    public int sample(float[] logits, SequenceView sequence, RandomGenerator random) {
        SamplingParams params = sequence.params();
        if (params.isGreedy()) return argmax(logits);
        CandidateSet set = truncate(logits, params);
        return set.draw(random.nextDouble() * set.total());
    }

    @Override
    public float[] probabilities(float[] logits, SequenceView sequence) {
        SamplingParams params = sequence.params();
        if (params.isGreedy()) {
            int best = argmax(logits);
            Arrays.fill(logits, 0f);
            logits[best] = 1f;
            return logits;
        }
        CandidateSet set = truncate(logits, params);
        Arrays.fill(logits, 0f);
        double total = set.total();
        for (int i = 0; i < set.size(); i++) logits[set.id(i)] = (float) (set.weight(i) / total);
        return logits;
    }

    /** Temperature, min-p, top-k and top-p with one uniform draw per token: what backends can draw on the device. */
    @Override
    public boolean drawsLikeBackendSampling() {
        return true;
    }

    /** The index of the largest value, the first one on ties; index 0 if every value is negative infinity. */
    public static int argmax(float[] values) {
        int best = 0;
        float max = values[0];
        for (int i = 1; i < values.length; i++) {
            if (values[i] > max) {
                max = values[i];
                best = i;
            }
        }
        return best;
    }

    /** The candidates left after min-p, top-k and top-p, weighted by their temperature-scaled probabilities. */
    private CandidateSet truncate(float[] logits, SamplingParams params) {
        float max = logits[argmax(logits)];
        if (max == Float.NEGATIVE_INFINITY || Float.isNaN(max)) {
            throw new IllegalArgumentException("every logit is masked or invalid: nothing can be sampled");
        }
        double temperature = params.temperature();
        // p_i / p_max = exp((l_i - max) / T) >= minP  <=>  l_i >= max + T ln(minP): a threshold on raw logits.
        double threshold = params.minP() > 0 ? max + temperature * Math.log(params.minP()) : Double.NEGATIVE_INFINITY;
        CandidateSet set = candidates.get();
        threshold = Math.min(threshold, max);
        int topK = params.topK();
        if (topK > 0 && topK <= HEAP_SELECTION_LIMIT && topK < logits.length) {
            set.gatherTopK(logits, threshold, topK);
        } else {
            set.gather(logits, threshold);
            set.keepTopK(topK);
        }
        set.weigh(max, temperature);
        set.keepTopP(params.topP());
        return set;
    }
}
