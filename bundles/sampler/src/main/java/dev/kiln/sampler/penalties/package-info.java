/**
 * The presence, frequency and repetition penalties as {@link dev.kiln.api.sampling.LogitsProcessor} services,
 * with vLLM's semantics.
 */
package dev.kiln.sampler.penalties;
