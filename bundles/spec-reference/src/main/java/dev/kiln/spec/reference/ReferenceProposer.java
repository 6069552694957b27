package dev.kiln.spec.reference;

import dev.kiln.api.KilnProperties;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.speculative.Draft;
import dev.kiln.api.speculative.DraftRequest;
import dev.kiln.api.speculative.DraftSession;
import dev.kiln.api.speculative.SpeculativeProposer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Modified;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;

/**
 * The {@code reference} proposer: drafts by prompt lookup ({@link NgramMatcher}) in the sequence's own tokens and in
 * the reference text its request supplied (the OpenAI API's {@code reference} extension: a document being edited,
 * code being refactored, text to repeat, an answer being regenerated). It needs nothing of the target model and
 * keeps only where each sequence stands in its reference, so it suits any model; it pays where outputs copy text.
 *
 * <p>Configured by Config Admin PID {@code dev.kiln.spec.reference}; a change applies to the sessions opened
 * afterwards (the engine reopens one when its speculation is reconfigured).
 */
@Component(service = SpeculativeProposer.class, configurationPid = ReferenceProposer.PID,
        property = KilnProperties.NAME + "=reference")
@Designate(ocd = ReferenceProposer.Config.class)
public final class ReferenceProposer implements SpeculativeProposer {
    /** Config Admin PID. */
    public static final String PID = "dev.kiln.spec.reference";

    /** Configuration as the web console shows it. */
    @ObjectClassDefinition(name = "Kiln reference-matching proposer",
            description = "Speculative drafts from n-gram matches in the request's tokens and its reference text")
    public @interface Config {
        @AttributeDefinition(name = "Shortest n-gram", description = "Shortest suffix of the sequence that is looked up")
        int min$_$ngram() default DEFAULT_MIN_NGRAM;

        @AttributeDefinition(name = "Longest n-gram", description = "Longest suffix of the sequence that is compared")
        int max$_$ngram() default DEFAULT_MAX_NGRAM;

        @AttributeDefinition(name = "Max draft tokens", description = "Most tokens drafted per step; 0: as many as "
                + "the engine's num-speculative-tokens")
        int max$_$draft$_$tokens() default 0;
    }

    /** Default shortest n-gram. */
    public static final int DEFAULT_MIN_NGRAM = 2;
    /** Default longest n-gram. */
    public static final int DEFAULT_MAX_NGRAM = 4;

    private volatile NgramMatcher matcher = new NgramMatcher(DEFAULT_MIN_NGRAM, DEFAULT_MAX_NGRAM);
    private volatile int maxDraftTokens;

    /** A proposer with the default n-gram sizes (Declarative Services configures it on activation). */
    public ReferenceProposer() {}

    /** A proposer with the given sizes, for use without OSGi. */
    public ReferenceProposer(int minNgram, int maxNgram, int maxDraftTokens) {
        configure(Map.of("min-ngram", minNgram, "max-ngram", maxNgram, "max-draft-tokens", maxDraftTokens));
    }

    @Activate
    @Modified
    void configure(Map<String, Object> properties) {
        int min = integer(properties, "min-ngram", DEFAULT_MIN_NGRAM);
        int max = integer(properties, "max-ngram", DEFAULT_MAX_NGRAM);
        int draft = integer(properties, "max-draft-tokens", 0);
        if (draft < 0) throw new IllegalArgumentException("max-draft-tokens must be >= 0, got " + draft);
        this.matcher = new NgramMatcher(min, max);
        this.maxDraftTokens = draft;
    }

    private static int integer(Map<String, Object> properties, String key, int fallback) {
        Object v = properties.get(key);
        if (v == null || (v instanceof String s && s.isBlank())) return fallback;
        if (v instanceof Number n) return n.intValue();
        try {
            return Integer.parseInt(String.valueOf(v).trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(key + " must be an integer, found '" + v + "'");
        }
    }

    @Override
    public DraftSession open(CausalLanguageModel target) {
        return new Session(matcher, maxDraftTokens);
    }

    /**
     * A session: the configuration it started with, and for each sequence drafting from its reference where the
     * last draft started there, so that the next one follows on (see {@link NgramMatcher}).
     */
    private static final class Session implements DraftSession {
        private final NgramMatcher matcher;
        private final int maxDraftTokens;
        private final Map<String, Integer> referenceStarts = new HashMap<>();

        Session(NgramMatcher matcher, int maxDraftTokens) {
            this.matcher = matcher;
            this.maxDraftTokens = maxDraftTokens;
        }

        @Override
        public boolean needsTargetHiddenStates() {
            return false;
        }

        @Override
        public List<Draft> propose(List<DraftRequest> requests) {
            List<Draft> drafts = new ArrayList<>(requests.size());
            for (DraftRequest r : requests) {
                int max = maxDraftTokens > 0 ? Math.min(maxDraftTokens, r.maxTokens()) : r.maxTokens();
                if (max == 0) {
                    drafts.add(Draft.NONE);
                    continue;
                }
                int previous = referenceStarts.getOrDefault(r.sequenceId(), -1);
                // Since the last draft the sequence advanced by at most that draft plus one token.
                NgramMatcher.Proposal p = matcher.propose(r.tokens(), r.reference(), max, previous, max + 1);
                if (p.referenceStart() >= 0) referenceStarts.put(r.sequenceId(), p.referenceStart());
                else referenceStarts.remove(r.sequenceId());
                drafts.add(Draft.of(p.tokens()));
            }
            return drafts;
        }

        @Override
        public void release(String sequenceId) {
            referenceStarts.remove(sequenceId);
        }

        @Override
        public void close() {
            referenceStarts.clear();
        }
    }
}
