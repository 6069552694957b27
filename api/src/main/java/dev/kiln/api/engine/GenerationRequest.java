package dev.kiln.api.engine;

import dev.kiln.api.sampling.SamplingParams;

/**
 * One sequence to generate.
 *
 * @param id           caller's id, unique among requests in flight (used in logs, stats and cancellation)
 * @param promptTokens the prompt's token ids (at least one)
 * @param sampling     how to choose tokens
 * @param maxTokens    the most tokens to generate
 * @param stopTokenIds tokens that end generation (EOS and any the request adds); not included in the output
 * @param ignoreEos    whether to keep generating past stop tokens until {@code maxTokens}
 * @param reference    reference text tokens for speculative matching, or an empty array
 */
public record GenerationRequest(String id, int[] promptTokens, SamplingParams sampling, int maxTokens,
                                int[] stopTokenIds, boolean ignoreEos, int[] reference) {
    public GenerationRequest {
        if (id == null || id.isEmpty()) throw new IllegalArgumentException("id is required");
        if (promptTokens == null || promptTokens.length == 0) throw new IllegalArgumentException("prompt must have at least one token");
        if (maxTokens < 0) throw new IllegalArgumentException("max_tokens must be >= 0");
        if (sampling == null) sampling = SamplingParams.GREEDY;
        if (stopTokenIds == null) stopTokenIds = new int[0];
        if (reference == null) reference = new int[0];
    }
}
