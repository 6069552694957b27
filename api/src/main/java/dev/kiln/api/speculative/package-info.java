/**
 * Speculative proposers (reference matching, draft models, MTP heads) whose drafts the engine verifies.
 */
@Export
@Version("1.0.0")
package dev.kiln.api.speculative;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
