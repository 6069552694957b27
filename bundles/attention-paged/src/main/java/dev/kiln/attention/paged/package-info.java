/**
 * Attention over a paged KV cache on the CPU backend: the {@code paged} attention kernel service.
 */
@Export
@Version("1.0.0")
package dev.kiln.attention.paged;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
