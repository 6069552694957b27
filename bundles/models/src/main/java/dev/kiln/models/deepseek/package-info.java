/**
 * DeepSeek-V2 and V3/R1: multi-head latent attention with a cache of compressed latents (absorbed and expanded
 * computation), YaRN, DeepSeekMoE, FP8 block checkpoints through the quantizer, and the multi-token prediction
 * module. Exported for {@link dev.kiln.models.deepseek.MtpHead}, through which speculative decoding reaches the
 * MTP module of a loaded model; the architectures themselves are services.
 */
@Export
@Version("1.0.0")
package dev.kiln.models.deepseek;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
