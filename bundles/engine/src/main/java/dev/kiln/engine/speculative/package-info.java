/**
 * The engine's side of speculative decoding: which draft session is active, handing it the sequences' requests
 * and notifications from the engine thread, swapping it safely from any thread, and counting what each proposer
 * achieved.
 */
package dev.kiln.engine.speculative;
