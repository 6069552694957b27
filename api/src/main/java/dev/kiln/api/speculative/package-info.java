/**
 * Speculative decoding: proposers (reference matching, draft models, MTP heads) and the sessions through which an
 * engine drafts tokens that it verifies with its target model.
 */
@Export
@Version("2.0.0")
package dev.kiln.api.speculative;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
