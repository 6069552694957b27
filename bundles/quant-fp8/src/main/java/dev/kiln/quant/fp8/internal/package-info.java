/**
 * FP8 e4m3 codec, the block-scaled weight with its Vector API GEMV and GEMM, and quantization on load.
 */
package dev.kiln.quant.fp8.internal;
