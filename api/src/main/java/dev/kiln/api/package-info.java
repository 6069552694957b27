/**
 * Names shared by every Kiln service: the service properties that key Kiln's registries.
 */
@Export
@Version("1.0.0")
package dev.kiln.api;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
