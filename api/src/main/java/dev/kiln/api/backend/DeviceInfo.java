package dev.kiln.api.backend;

/**
 * What a backend runs on.
 *
 * @param backend     the backend's name ({@code cpu}, {@code cuda})
 * @param description a human-readable description, e.g. "2 cores, AVX-512 (512-bit vectors)" or "NVIDIA H100 80GB HBM3"
 * @param parallelism worker threads (CPU) or streaming multiprocessors (GPU)
 * @param memoryBytes memory available to the backend in bytes, or -1 when unknown
 */
public record DeviceInfo(String backend, String description, int parallelism, long memoryBytes) {}
