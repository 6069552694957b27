/** Choosing each sequence's next token from its logits row: stop-token masks, logits processors, sampler, log-probabilities. */
package dev.kiln.engine.sampling;
