package dev.kiln.server.openai;

import dev.kiln.api.sampling.SamplingParams;
import java.util.List;

/**
 * The generation parameters shared by chat and text completions, validated with OpenAI's and vLLM's ranges.
 */
record GenerationParams(SamplingParams sampling, Integer maxTokens, int minTokens, int n, List<String> stop,
                        int[] stopTokenIds, boolean ignoreEos, boolean stream, boolean includeUsage,
                        boolean skipSpecialTokens, boolean tokensAsIds) {
    static final int MAX_STOPS = 16;

    static GenerationParams read(JsonRequest r, boolean chat, int vocabSize, int topLogprobs) {
        Integer maxTokens = r.integer(chat && r.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens", 0, Integer.MAX_VALUE);
        if (chat && maxTokens != null && maxTokens == 0) throw ApiException.invalid("max_tokens", "'max_tokens' must be at least 1");
        double temperature = r.number("temperature", 1.0, 0, 2);
        double topP = r.number("top_p", 1.0, 0, 1);
        if (topP == 0) throw ApiException.invalid("top_p", "'top_p' must be greater than 0");
        int topK = r.integer("top_k", 0, -1, Integer.MAX_VALUE);
        double minP = r.number("min_p", 0, 0, 1);
        double presence = r.number("presence_penalty", 0, -2, 2);
        double frequency = r.number("frequency_penalty", 0, -2, 2);
        double repetition = r.number("repetition_penalty", 1, 0, 2);
        if (repetition == 0) throw ApiException.invalid("repetition_penalty", "'repetition_penalty' must be greater than 0");
        Long seed = r.longValue("seed");
        int n = r.integer("n", 1, 1, 16);
        int minTokens = r.integer("min_tokens", 0, 0, Integer.MAX_VALUE);
        if (maxTokens != null && minTokens > maxTokens) throw ApiException.invalid("min_tokens", "'min_tokens' must not exceed 'max_tokens'");
        List<String> stop = r.strings("stop", MAX_STOPS);
        int[] stopIds = r.ints("stop_token_ids", 0, vocabSize - 1);
        boolean stream = r.bool("stream", false);
        boolean includeUsage = false;
        var options = r.object("stream_options");
        if (options != null) {
            if (!stream) throw ApiException.invalid("stream_options", "'stream_options' is only allowed when 'stream' is true");
            JsonRequest o = new JsonRequest(options);
            includeUsage = o.bool("include_usage", false);
        }
        if (n > 1 && temperature == 0) {
            // n greedy choices would be identical; vLLM allows it, and so do we.
        }
        SamplingParams sampling = new SamplingParams(temperature, topP, topK <= 0 ? 0 : topK, minP, presence, frequency,
                repetition, seed, topLogprobs);
        return new GenerationParams(sampling, maxTokens, minTokens, n, stop, stopIds, r.bool("ignore_eos", false), stream,
                includeUsage, r.bool("skip_special_tokens", true), r.bool("return_tokens_as_token_ids", false));
    }
}
