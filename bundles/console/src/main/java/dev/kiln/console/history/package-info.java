/**
 * The console's recent history: once a second the engine's counters and the server's time-to-first-token histogram
 * are read and turned into rates (tokens per second, mean TTFT, acceptance rate) and levels (KV cache usage), kept
 * for the last minutes for the live plots.
 */
package dev.kiln.console.history;
