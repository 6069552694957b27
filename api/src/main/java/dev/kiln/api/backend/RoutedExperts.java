package dev.kiln.api.backend;

import dev.kiln.api.tensor.Tensor;

/**
 * The routed experts of one DeepSeekMoE layer run where the activations live: routing, the experts' products and
 * the weighted sum back into the residual stream, with nothing read back to the host, so that a step of a
 * mixture-of-experts model can be recorded and replayed like any other (a CUDA graph). Made by
 * {@link ComputeBackend#routedExperts}; a model routes on the host through {@link ExpertRouting#route} where a
 * backend offers none.
 *
 * @since 1.4
 */
public interface RoutedExperts extends AutoCloseable {
    /** The most tokens one {@link #addTo} takes. */
    int capacity();

    /**
     * For every token {@code t < routedTokens}: {@code residual[t] += Σ_j w_j · down_j(silu(gate_j(x[t])) · up_j(x[t]))}
     * over the experts j and weights w_j that the routing picks from {@code routerLogits[t]}. Rows from
     * {@code routedTokens} on are padding, whose results nobody reads: an implementation may leave them alone or
     * compute them like the others (a GPU does, so that its recorded steps depend only on the padded row count).
     *
     * @param normed       the layer's normed input {@code [T, hidden]}
     * @param routerLogits the router's logits {@code [T, experts]}
     * @param routedTokens how many leading tokens are routed, at most {@link #capacity()}
     * @param residual     {@code [T, hidden]}, added to in place; apart from normed
     */
    void addTo(Tensor normed, Tensor routerLogits, int routedTokens, Tensor residual);

    /** Releases the device workspace; the experts' weights stay with their owner. */
    @Override
    void close();
}
