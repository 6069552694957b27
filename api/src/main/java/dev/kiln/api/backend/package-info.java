/**
 * Compute backends (CPU, CUDA): tensors, weights and the primitive operations that models are written against.
 *
 * <p>A backend implements the primitives; a few composite operations have defaults built from them that a backend may
 * replace with its own kernels: {@code matmulPerHead} and multi-range {@code copyColumns} (MLA's per-head products),
 * {@code argmaxRows} and {@code sampleRows} (choosing tokens where the logits live), and {@code routedExperts}, which
 * returns a {@link dev.kiln.api.backend.RoutedExperts} that routes and runs a mixture-of-experts layer's routed
 * experts without reading anything back ({@link dev.kiln.api.backend.ExpertRouting} is the rule it must reproduce).
 *
 * <p>1.4: {@code routedExperts}, {@code RoutedExperts}, {@code ExpertRouting}, {@code matmulPerHead}, multi-range
 * {@code copyColumns}.
 *
 * <p>1.5: {@code PendingTokens}, {@code overlapsSteps}, {@code argmaxRowsPending}, {@code sampleRowsPending} and
 * {@code embed} of pending tokens: a step queued before the tokens of the step ahead of it are read back.
 */
@Export
@Version("1.5.0")
package dev.kiln.api.backend;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
