/**
 * The weight-only INT4 format as a {@link dev.kiln.api.quant.Quantizer} service; its quantization lives in the
 * internal package, its kernels in the shared {@code dev.kiln.quant.cpu} bundle. Nothing here is exported.
 */
package dev.kiln.quant.int4;
