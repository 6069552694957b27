package dev.kiln.models.deepseek;

import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.backend.ExpertRouting;
import dev.kiln.api.backend.RoutedExperts;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.tensor.Tensor;

/**
 * DeepSeekMoE: routed experts chosen per token by the {@link ExpertRouting}, plus shared experts every token goes
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
 *
 * Where the backend offers its own {@link RoutedExperts} (a GPU: routing and grouped expert products on the device)
 * the routed part runs there instead, with nothing read back to the host.
 */
final class MixtureOfExperts implements FeedForward {
    private final ComputeBackend backend;
    private final Weight router;
    private final ExpertRouting routing;
    private final DenseMlp[] experts;
    private final DenseMlp shared;
    private final RoutedExperts onDevice;

    /**
     * @param router   the gate {@code [routed experts, hidden]}
     * @param experts  the routed experts, by index
     * @param shared   the shared experts as one MLP, or {@code null} when there are none
     * @param onDevice the backend's own path for the routed experts, or {@code null} to route on the host
     */
    MixtureOfExperts(ComputeBackend backend, Weight router, ExpertRouting routing, DenseMlp[] experts, DenseMlp shared,
                     RoutedExperts onDevice) {
        this.backend = backend;
        this.router = router;
        this.routing = routing;
        this.experts = experts;
        this.shared = shared;
        this.onDevice = onDevice;
    }

    @Override
    public void addTo(Tensor normed, Tensor residual, Activations.Step step) {
        backend.matmul(normed, router, step.routerLogits());
        if (onDevice != null && step.routedTokens() <= onDevice.capacity()) {
            onDevice.addTo(normed, step.routerLogits(), step.routedTokens(), residual);
        } else {
            addRoutedOnHost(normed, residual, step);
        }
        if (shared != null) {
            shared.apply(backend, normed, step.sharedGate(), step.sharedUp(), step.projected());
            backend.add(residual, step.projected());
        }
    }

    private void addRoutedOnHost(Tensor normed, Tensor residual, Activations.Step step) {
        int tokens = step.tokens();
        ExpertRouting.Assignment assignment = routing.route(backend.read(step.routerLogits()), step.routedTokens());
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
    }
}
