/**
 * Quantization on load for the CUDA backend's weight-only integer formats: the rules of the CPU bundles
 * ({@code weight_only_int8}: per-row INT8; {@code weight_only_int4}: group-wise INT4), arithmetic for arithmetic, so
 * that one checkpoint gives the same codes and scales on both backends, and the packing of those codes into the
 * device layout of {@link dev.kiln.backend.cuda.internal.QuantizedWeight}. Not exported: the quantizer components of
 * {@code dev.kiln.backend.cuda} are its only users.
 */
package dev.kiln.backend.cuda.quant;
