/**
 * Group-wise symmetric INT4 quantization of floating-point weights on load.
 */
package dev.kiln.quant.int4.internal;
