/**
 * Sampling parameters, samplers and logits processors.
 */
@Export
@Version("1.2.0")
package dev.kiln.api.sampling;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
