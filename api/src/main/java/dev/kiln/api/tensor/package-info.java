/**
 * Element types and the backend-owned tensor handle that models pass between operations.
 */
@Export
@Version("1.0.0")
package dev.kiln.api.tensor;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
