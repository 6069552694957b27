/**
 * Who may reach what: API keys on the OpenAI-compatible API, CORS (off unless origins are configured), and the
 * separate admin listener that serves the web console and {@code /metrics} apart from the API.
 */
package dev.kiln.server.security;
