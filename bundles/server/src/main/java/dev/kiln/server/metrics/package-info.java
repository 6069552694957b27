/**
 * What the HTTP server measured on the requests it served: latency distributions (time to first token,
 * inter-token latency, end-to-end latency) and how requests finished. The server bundle registers a
 * {@link dev.kiln.server.metrics.ServingMetrics} service; {@code /metrics} and the admin console read it.
 */
@Export
@Version("1.0.0")
package dev.kiln.server.metrics;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
