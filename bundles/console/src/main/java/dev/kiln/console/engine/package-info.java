/**
 * What the engine is built with and how the console changes it: the pluggable service types (backend, attention
 * kernel, quantizer, speculative proposer), the providers registered for each, the one the engine's configuration
 * ({@code dev.kiln.engine}) selects, and facts about the loaded model that the engine does not report itself.
 */
package dev.kiln.console.engine;
