/**
 * The {@code logit-bias} logits processor: per-request additive biases on chosen token ids. Not exported: the
 * processor is a service.
 */
package dev.kiln.sampler.bias;
