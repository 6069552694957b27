/**
 * Model architectures (qwen2, llama, deepseek_v3, ...), their configuration, and the batched forward pass the engine drives.
 */
@Export
@Version("1.2.0")
package dev.kiln.api.model;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
