/**
 * Quantization on load for the CUDA backend's quantized formats: the rules of the CPU bundles
 * ({@code weight_only_int8}: per-row INT8; {@code weight_only_int4}: group-wise INT4; {@code fp8}: e4m3 in 128×128
 * blocks), arithmetic for arithmetic, so that one checkpoint gives the same codes and scales on both backends; the
 * reading of pre-quantized FP8 checkpoints by the CPU bundle's checks; and the packing of codes into the device
 * layouts of {@link dev.kiln.backend.cuda.internal.QuantizedWeight} and {@link dev.kiln.backend.cuda.internal.Fp8Weight}.
 * Not exported: the quantizer components of {@code dev.kiln.backend.cuda} are its only users.
 */
package dev.kiln.backend.cuda.quant;
