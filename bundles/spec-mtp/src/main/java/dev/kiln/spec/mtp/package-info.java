/**
 * The {@code mtp} speculative proposer: DeepSeek-V3's multi-token prediction module drafts from the target's own
 * hidden states. Not exported: the proposer is a service.
 */
package dev.kiln.spec.mtp;
