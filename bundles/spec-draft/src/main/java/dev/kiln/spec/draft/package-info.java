/**
 * The {@code draft-model} speculative proposer: a smaller model with the target's vocabulary drafts greedily over
 * its own paged KV cache. Not exported: the proposer is a service.
 */
package dev.kiln.spec.draft;
