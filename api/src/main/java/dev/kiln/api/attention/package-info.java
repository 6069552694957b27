/**
 * Attention kernels over a paged KV cache, with multi-token queries per sequence.
 */
@Export
@Version("1.0.0")
package dev.kiln.api.attention;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
