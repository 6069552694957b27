/**
 * The inference engine: submit a generation request, receive its token events, cancel it, read statistics.
 */
@Export
@Version("1.2.0")
package dev.kiln.api.engine;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
