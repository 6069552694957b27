/**
 * The per-channel INT8 weight with its Vector API decode kernel, and its quantization on load.
 */
package dev.kiln.quant.int8.internal;
