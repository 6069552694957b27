/**
 * The FP8 block weight format as a {@link dev.kiln.api.quant.Quantizer} service; its kernels live in the internal
 * package. Nothing here is exported: models reach it through the service registry.
 */
package dev.kiln.quant.fp8;
