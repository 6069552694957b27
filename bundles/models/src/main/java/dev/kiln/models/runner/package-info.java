/**
 * Runs a single sequence through a model without an engine: prefill in chunks, then greedy decoding, over a KV
 * cache with a fixed list of blocks. For command-line tools and tests; the engine's scheduler serves requests.
 */
@Export
@Version("1.0.0")
package dev.kiln.models.runner;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
