package dev.kiln.api.engine;

import dev.kiln.api.sampling.LogitsProcessor;
import dev.kiln.api.sampling.SamplingParams;
import java.util.List;

/**
 * One sequence to generate.
 *
 * @param id             caller's id, unique among requests in flight (used in logs, stats and cancellation)
 * @param promptTokens   the prompt's token ids (at least one)
 * @param sampling       how to choose tokens (its {@code logprobs} asks for top log-probabilities per token)
 * @param maxTokens      the most tokens to generate; 0 computes only the prompt (for prompt log-probabilities)
 * @param minTokens      stop tokens are suppressed until this many tokens were generated
 * @param stopTokenIds   tokens that end generation besides the model's end-of-sequence tokens; not included in the
 *                       output
 * @param ignoreEos      whether to keep generating past the model's end-of-sequence tokens until {@code maxTokens}
 * @param promptLogprobs how many top log-probabilities to return for each prompt position, or -1 for none (0 gives
 *                       only each prompt token's own log-probability)
 * @param reference      reference text tokens for speculative matching, or an empty array
 * @param processors     logits processors of this request alone (a grammar that constrains its output), applied
 *                       after the registered ones; the engine gives them this request's sequence only
 */
public record GenerationRequest(String id, int[] promptTokens, SamplingParams sampling, int maxTokens, int minTokens,
                                int[] stopTokenIds, boolean ignoreEos, int promptLogprobs, int[] reference,
                                List<LogitsProcessor> processors) {
    public GenerationRequest {
        if (id == null || id.isEmpty()) throw new IllegalArgumentException("id is required");
        if (promptTokens == null || promptTokens.length == 0) throw new IllegalArgumentException("prompt must have at least one token");
        if (maxTokens < 0) throw new IllegalArgumentException("max_tokens must be >= 0");
        if (minTokens < 0 || minTokens > maxTokens) throw new IllegalArgumentException("min_tokens must be in [0, max_tokens]");
        if (promptLogprobs < -1) throw new IllegalArgumentException("prompt_logprobs must be >= -1");
        if (sampling == null) sampling = SamplingParams.GREEDY;
        if (stopTokenIds == null) stopTokenIds = new int[0];
        if (reference == null) reference = new int[0];
        processors = processors == null ? List.of() : List.copyOf(processors);
    }

    /** A request without processors of its own. */
    public GenerationRequest(String id, int[] promptTokens, SamplingParams sampling, int maxTokens, int minTokens,
                             int[] stopTokenIds, boolean ignoreEos, int promptLogprobs, int[] reference) {
        this(id, promptTokens, sampling, maxTokens, minTokens, stopTokenIds, ignoreEos, promptLogprobs, reference, List.of());
    }

    /** A greedy request with defaults for everything else. */
    public static GenerationRequest greedy(String id, int[] promptTokens, int maxTokens) {
        return new GenerationRequest(id, promptTokens, SamplingParams.GREEDY, maxTokens, 0, new int[0], false, -1, new int[0]);
    }
}
