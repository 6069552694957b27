/**
 * Compute backends (CPU, CUDA): tensors, weights and the primitive operations that models are written against.
 */
@Export
@Version("1.4.0")
package dev.kiln.api.backend;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
