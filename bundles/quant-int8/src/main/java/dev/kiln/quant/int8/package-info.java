/**
 * The weight-only INT8 format as a {@link dev.kiln.api.quant.Quantizer} service; its weight and kernels live in the
 * internal package. Nothing here is exported: models reach it through the service registry.
 */
package dev.kiln.quant.int8;
