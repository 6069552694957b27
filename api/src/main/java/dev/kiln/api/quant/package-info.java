/**
 * Quantizers: weight formats (INT8, INT4, FP8 block, AWQ) made from or read out of checkpoints.
 */
@Export
@Version("1.0.0")
package dev.kiln.api.quant;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
