package dev.kiln.models.deepseek;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.tensor.Tensor;

/**
 * DeepSeekMoE: routed experts chosen per token by the {@link ExpertRouter}, plus shared experts every token goes
 * through.
 *
 * <pre>
 * logits = x·Wgateᵀ                               (the router, kept in the checkpoint's precision)
 * experts, weights = route(logits)                (on the host: a few floats per token)
 * for each expert e with tokens T_e:               (batched: one pass of e's weights for all of T_e)
 *     y = down_e(silu(gate_e(x[T_e])) * up_e(x[T_e]))
 *     residual[T_e] += weights · y
 * residual += shared(x)
 * </pre>
 */
final class MixtureOfExperts implements FeedForward {
    private final ComputeBackend backend;
    private final Weight router;
    private final ExpertRouter routing;
    private final DenseMlp[] experts;
    private final DenseMlp shared;

    /**
     * @param router  the gate {@code [routed experts, hidden]}
     * @param experts the routed experts, by index
     * @param shared  the shared experts as one MLP, or {@code null} when there are none
     */
    MixtureOfExperts(ComputeBackend backend, Weight router, ExpertRouter routing, DenseMlp[] experts, DenseMlp shared) {
        this.backend = backend;
        this.router = router;
        this.routing = routing;
        this.experts = experts;
        this.shared = shared;
    }

    @Override
    public void addTo(Tensor normed, Tensor residual, Activations.Step step) {
        int tokens = step.tokens();
        backend.matmul(normed, router, step.routerLogits());
        ExpertRouter.Assignment assignment = routing.route(backend.read(step.routerLogits()), step.routedTokens());
        Activations buffers = step.buffers();
        for (int e = 0; e < experts.length; e++) {
            int[] served = assignment.tokens()[e];
            int n = served.length;
            if (n == 0) continue;
            // When an expert serves every token (always, in single-sequence decode) its input is the step's input.
            Tensor input = n == tokens ? normed : buffers.expertIn.rows(n);
            if (n < tokens) backend.gatherRows(normed, served, input);
            Tensor out = buffers.expertOut.rows(n);
            experts[e].apply(backend, input, buffers.expertGate.rows(n), buffers.expertUp.rows(n), out);
            backend.scatterAddRows(out, served, assignment.weights()[e], residual);
        }
        if (shared != null) {
            shared.apply(backend, normed, step.sharedGate(), step.sharedUp(), step.projected());
            backend.add(residual, step.projected());
        }
    }
}
