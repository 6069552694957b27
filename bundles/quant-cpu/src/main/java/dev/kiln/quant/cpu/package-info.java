/**
 * CPU kernels shared by the integer weight formats: {@link dev.kiln.quant.cpu.PackedWeight}, the base of a weight
 * whose rows are decoded inside its kernels (its few-token and prefill paths), {@link dev.kiln.quant.cpu.TiledGemm},
 * the cache-blocked product over decoded tiles, and {@link dev.kiln.quant.cpu.Int4GroupWeight}, the group-wise INT4
 * weight that both {@code weight_only_int4} and {@code awq} load into. Exported for the quantizer bundles; models
 * never see these types (they hold {@link dev.kiln.api.backend.Weight}s).
 */
@Export
@Version("1.0.0")
package dev.kiln.quant.cpu;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
