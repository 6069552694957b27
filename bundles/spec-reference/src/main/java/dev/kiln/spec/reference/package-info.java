/**
 * The {@code reference} speculative proposer: prompt lookup (n-gram matching) against the request's own tokens and
 * its reference text. Not exported: the proposer is a service.
 */
package dev.kiln.spec.reference;
