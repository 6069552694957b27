/**
 * AutoAWQ's {@code quantization_config} and its GEMM packing of {@code qweight}, {@code qzeros} and {@code scales}.
 */
package dev.kiln.quant.awq.internal;
