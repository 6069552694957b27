/**
 * The loader's private parts: parsing and validating safetensors headers, strict reading of the folder's JSON
 * files, shard indexes, and the {@link dev.kiln.api.checkpoint.Checkpoint} over mapped files. Not exported.
 */
package dev.kiln.loader.safetensors.internal;
