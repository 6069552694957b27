/**
 * Reading model checkpoints (Hugging Face folders: config.json and safetensors) without copying their weights.
 */
@Export
@Version("1.0.0")
package dev.kiln.api.checkpoint;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
