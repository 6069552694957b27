/**
 * Model architectures (qwen2, llama, deepseek_v3, ...), their configuration, and the batched forward pass the engine drives.
 *
 * <p>1.3: {@code ForwardBatch.pendingTokens} and {@code CausalLanguageModel.acceptsPendingTokens}: a step's input
 * tokens may still be being chosen on the device by the step ahead of it.
 */
@Export
@Version("1.3.0")
package dev.kiln.api.model;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
