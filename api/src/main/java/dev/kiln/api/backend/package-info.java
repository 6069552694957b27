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
 */
@Export
@Version("1.4.0")
package dev.kiln.api.backend;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
