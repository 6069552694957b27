/**
 * Reading and writing the safetensors format: the {@code safetensors} {@link dev.kiln.api.checkpoint.CheckpointLoader}
 * for Hugging Face checkpoint folders, bare {@code .safetensors} files opened without a configuration, a streaming
 * writer, and decoding of tensor values into Java arrays for tests and tools.
 */
@Export
@Version("1.0.0")
package dev.kiln.loader.safetensors;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
