/**
 * The CUDA compute backend ({@code kiln.name=cuda}) and its paged attention kernel ({@code kiln.name=paged},
 * {@code kiln.backend=cuda}): NVIDIA GPUs driven through the Java FFM API, with no native code to build.
 */
@Export
@Version("1.0.0")
package dev.kiln.backend.cuda;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
