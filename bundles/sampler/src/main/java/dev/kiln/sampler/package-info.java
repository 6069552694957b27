/**
 * The default {@link dev.kiln.api.sampling.Sampler}: greedy, temperature, min-p, top-k and top-p by partial
 * selection, drawn from the request's random stream.
 */
package dev.kiln.sampler;
