package dev.kiln.server.openai;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import dev.kiln.api.engine.TokenLogprobs;
import dev.kiln.api.sampling.SamplingParams;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The generation parameters shared by chat and text completions, validated with OpenAI's and vLLM's ranges.
 */
record GenerationParams(SamplingParams sampling, int topLogprobs, Integer maxTokens, int minTokens, int n, List<String> stop,
                        int[] stopTokenIds, boolean ignoreEos, boolean stream, boolean includeUsage,
                        boolean skipSpecialTokens, boolean tokensAsIds) {
    static final int MAX_STOPS = 16;
    static final double MAX_LOGIT_BIAS = 100;

    /**
     * @param topLogprobs the alternatives asked for at each position when log-probabilities are asked for at all;
     *                    null when they are not
     */
    static GenerationParams read(JsonRequest r, boolean chat, int vocabSize, Integer topLogprobs) {
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
                repetition, seed, engineLogprobs(topLogprobs), logitBias(r, vocabSize));
        return new GenerationParams(sampling, topLogprobs == null ? 0 : topLogprobs, maxTokens, minTokens, n, stop, stopIds,
                r.bool("ignore_eos", false), stream, includeUsage, r.bool("skip_special_tokens", true),
                r.bool("return_tokens_as_token_ids", false));
    }

    /**
     * The engine computes a token's log-probability only with at least one alternative; a client asking for the
     * chosen tokens' log-probabilities alone (chat's {@code logprobs: true}, completions' {@code logprobs: 0}) gets
     * one computed and trimmed away ({@link #trimmed}).
     */
    private static int engineLogprobs(Integer topLogprobs) {
        return topLogprobs == null ? 0 : Math.max(1, topLogprobs);
    }

    /** The events' log-probabilities with as many alternatives as the client asked for. */
    List<TokenLogprobs> trimmed(List<TokenLogprobs> logprobs) {
        if (logprobs == null) return null;
        List<TokenLogprobs> result = new ArrayList<>(logprobs.size());
        for (TokenLogprobs lp : logprobs) {
            result.add(lp.topTokens().length <= topLogprobs ? lp : new TokenLogprobs(lp.token(), lp.logprob(),
                    Arrays.copyOf(lp.topTokens(), topLogprobs), Arrays.copyOf(lp.topLogprobs(), topLogprobs)));
        }
        return result;
    }

    /** OpenAI's {@code logit_bias}: token ids (as the object's keys) to a bias between -100 and 100. */
    private static Map<Integer, Float> logitBias(JsonRequest r, int vocabSize) {
        JsonObject biases = r.object("logit_bias");
        if (biases == null) return Map.of();
        Map<Integer, Float> result = new HashMap<>();
        for (Map.Entry<String, JsonElement> e : biases.entrySet()) {
            int token;
            try {
                token = Integer.parseInt(e.getKey().strip());
            } catch (NumberFormatException notAnId) {
                throw ApiException.invalid("logit_bias", "'logit_bias' keys must be token ids, got '" + e.getKey() + "'");
            }
            if (token < 0 || token >= vocabSize) {
                throw ApiException.invalid("logit_bias", "'logit_bias' token id " + token + " is outside the vocabulary (0 to "
                        + (vocabSize - 1) + ")");
            }
            if (!(e.getValue() instanceof JsonPrimitive p && p.isNumber()) || !Double.isFinite(p.getAsDouble())
                    || Math.abs(p.getAsDouble()) > MAX_LOGIT_BIAS) {
                throw ApiException.invalid("logit_bias", "'logit_bias' values must be numbers between -100 and 100, got "
                        + e.getValue() + " for token " + token);
            }
            result.put(token, p.getAsFloat());
        }
        return result;
    }
}
