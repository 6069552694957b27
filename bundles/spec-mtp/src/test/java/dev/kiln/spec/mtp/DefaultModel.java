package dev.kiln.spec.mtp;

import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.api.speculative.SpeculativeProposer;
import dev.kiln.api.tokenizer.Tokenizer;
import dev.kiln.engine.InferenceEngineCore;
import dev.kiln.spec.draft.DraftModelProposer;
import dev.kiln.spec.reference.ReferenceProposer;
import java.util.List;

/**
 * The embedded default model (DeepSeek-V3 architecture with an MTP module), its draft model, prompts in its chat
 * format, and the three proposers built without OSGi.
 */
final class DefaultModel {
    /** A text that chat requests ask to repeat, and pass as their reference. */
    static final String TEXT = "The old man walked slowly down the road, and the children followed him to the river "
            + "where the boats were waiting for the morning tide. Nobody spoke; the water was grey and still.";

    /** Prompts of different kinds: chat, plain text, scripture, news, a repeat request. */
    static final List<String> PROMPTS = List.of(
            "<|user|>What did the committee say about the new school?<|eos|><|assistant|>",
            "In the beginning God created the heaven and the earth.",
            "The report of the grand jury was read to the court on Monday, and",
            "<|user|>Tell me about the farm where you grew up.<|eos|><|assistant|>",
            "She opened the letter slowly. It was from her brother, who had left the town",
            "<|user|>Repeat this text exactly: " + TEXT + "<|eos|><|assistant|>");

    private DefaultModel() {}

    static CausalLanguageModel target(int maxBatchTokens) {
        return Harness.build(Harness.defaultModel(""), maxBatchTokens);
    }

    static Tokenizer tokenizer() {
        return Harness.tokenizer();
    }

    /** A proposer by its service name. */
    static SpeculativeProposer proposer(String name) {
        return switch (name) {
            case "reference" -> new ReferenceProposer(ReferenceProposer.DEFAULT_MIN_NGRAM, ReferenceProposer.DEFAULT_MAX_NGRAM, 0);
            case "mtp" -> new MtpProposer();
            case "draft-model" -> DraftModelProposer.of(backend -> Harness.build(Harness.defaultModel("-draft"), 256),
                    DraftModelProposer.DEFAULT_KV_CACHE_MEMORY, DraftModelProposer.DEFAULT_BLOCK_SIZE);
            default -> throw new IllegalArgumentException(name);
        };
    }

    static GenerationRequest greedy(String id, int[] prompt, int maxTokens, int[] reference) {
        return new GenerationRequest(id, prompt, SamplingParams.GREEDY, maxTokens, 0, null, true, -1, reference);
    }

    /** Runs the requests together and returns each one's tokens. */
    static int[][] generate(InferenceEngineCore engine, List<GenerationRequest> requests) {
        Harness.Collector[] c = new Harness.Collector[requests.size()];
        for (int i = 0; i < c.length; i++) {
            c[i] = new Harness.Collector();
            engine.submit(requests.get(i), c[i]);
        }
        int[][] out = new int[c.length][];
        for (int i = 0; i < c.length; i++) out[i] = c[i].await().tokens();
        return out;
    }

    /** Waits until the engine's proposer drafts (a draft model loads in the background). */
    static void awaitDrafts(InferenceEngineCore engine, int[] prompt) {
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (engine.stats().draftTokensProposed() == 0) {
            if (System.nanoTime() > deadline) throw new AssertionError("no drafts: " + engine.speculationStatus());
            generate(engine, List.of(greedy("warm-up-" + System.nanoTime(), prompt, 8, null)));
        }
    }
}
