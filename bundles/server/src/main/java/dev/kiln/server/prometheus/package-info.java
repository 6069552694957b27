/**
 * Prometheus metrics: the latency histograms recorded in the request path, the request timer that feeds them, and
 * {@code GET /metrics} in the text exposition format with vLLM's metric names under the {@code kiln:} prefix.
 */
package dev.kiln.server.prometheus;
