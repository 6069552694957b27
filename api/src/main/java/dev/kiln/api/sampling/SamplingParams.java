package dev.kiln.api.sampling;

import java.util.Map;

/**
 * How to choose each next token, with the meanings of the OpenAI API and vLLM's extensions.
 *
 * @param temperature       0 for greedy (argmax); otherwise logits are divided by it
 * @param topP              nucleus: keep the smallest set of tokens whose probability reaches this (1 = off)
 * @param topK              keep the k most likely tokens (0 or negative = off)
 * @param minP              drop tokens below this fraction of the top token's probability (0 = off)
 * @param presencePenalty   subtracted once from the logit of every token already generated
 * @param frequencyPenalty  subtracted per occurrence of a token already generated
 * @param repetitionPenalty divides positive (multiplies negative) logits of tokens in prompt or output (1 = off)
 * @param seed              seed of the per-request random stream, or {@code null} for a random one; equal seeds
 *                          and inputs give equal outputs
 * @param logprobs          how many top log-probabilities to return per token (0 = none)
 * @param logitBias         added to the logits of these token ids before a token is chosen (OpenAI's
 *                          {@code logit_bias}: -100 bans a token, 100 all but forces it); empty for none
 */
public record SamplingParams(double temperature, double topP, int topK, double minP, double presencePenalty,
                             double frequencyPenalty, double repetitionPenalty, Long seed, int logprobs,
                             Map<Integer, Float> logitBias) {
    /** Greedy decoding, no penalties. */
    public static final SamplingParams GREEDY = new SamplingParams(0, 1, 0, 0, 0, 0, 1, null, 0);

    /** Parameters without a logit bias. */
    public SamplingParams(double temperature, double topP, int topK, double minP, double presencePenalty,
                          double frequencyPenalty, double repetitionPenalty, Long seed, int logprobs) {
        this(temperature, topP, topK, minP, presencePenalty, frequencyPenalty, repetitionPenalty, seed, logprobs, Map.of());
    }

    public SamplingParams {
        if (temperature < 0 || !Double.isFinite(temperature)) throw new IllegalArgumentException("temperature must be >= 0");
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top_p must be in (0, 1]");
        if (!(minP >= 0 && minP <= 1)) throw new IllegalArgumentException("min_p must be in [0, 1]");
        if (!(repetitionPenalty > 0) || !Double.isFinite(repetitionPenalty)) throw new IllegalArgumentException("repetition_penalty must be > 0");
        if (!Double.isFinite(presencePenalty) || !Double.isFinite(frequencyPenalty)) throw new IllegalArgumentException("penalties must be finite");
        if (logprobs < 0) throw new IllegalArgumentException("logprobs must be >= 0");
        logitBias = logitBias == null ? Map.of() : Map.copyOf(logitBias);
        for (var bias : logitBias.entrySet()) {
            if (bias.getKey() < 0) throw new IllegalArgumentException("logit_bias token ids must be >= 0");
            if (!Float.isFinite(bias.getValue())) throw new IllegalArgumentException("logit_bias values must be finite");
        }
    }

    /** The same parameters with another seed (each of n choices draws from its own stream). */
    public SamplingParams withSeed(Long seed) {
        return new SamplingParams(temperature, topP, topK, minP, presencePenalty, frequencyPenalty, repetitionPenalty, seed,
                logprobs, logitBias);
    }

    /** Whether this is greedy decoding. */
    public boolean isGreedy() {
        return temperature == 0;
    }
}
