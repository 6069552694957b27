/**
 * The AWQ weight format as a {@link dev.kiln.api.quant.Quantizer} service; reading AutoAWQ's packing lives in the
 * internal package, the kernels in the shared {@code dev.kiln.quant.cpu} bundle. Nothing here is exported.
 */
package dev.kiln.quant.awq;
