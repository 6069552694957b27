/**
 * The CPU compute backend: heap tensors, the worker pool and the backend service. Exported so that kernels
 * living in other bundles (attention, quantized weight formats) can operate on {@link dev.kiln.backend.cpu.CpuTensor}
 * storage and share the backend's {@link dev.kiln.backend.cpu.WorkerPool} instead of starting threads of their own.
 */
@Export
@Version("1.0.0")
package dev.kiln.backend.cpu;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
