/**
 * The CUDA compute backend ({@code kiln.name=cuda}), its paged attention kernel ({@code kiln.name=paged},
 * {@code kiln.backend=cuda}) and its quantized weight formats ({@code kiln.name=weight_only_int8},
 * {@code weight_only_int4} and {@code fp8}, {@code kiln.backend=cuda}): NVIDIA GPUs driven through the Java FFM API,
 * with no native code to build.
 */
@Export
@Version("1.2.0")
package dev.kiln.backend.cuda;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
