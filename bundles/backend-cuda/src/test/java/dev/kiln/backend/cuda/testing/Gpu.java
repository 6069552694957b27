package dev.kiln.backend.cuda.testing;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.kiln.backend.cuda.CudaAvailability;
import dev.kiln.backend.cuda.CudaBackend;
import dev.kiln.backend.cuda.CudaPagedAttention;

/**
 * The one CUDA backend the device tests share (a context per test class would cost a second each), or a skipped
 * test where this machine has no CUDA device.
 */
public final class Gpu {
    private static CudaBackend backend;
    private static final CudaPagedAttention ATTENTION = new CudaPagedAttention();

    private Gpu() {}

    /** The backend on device 0; skips the calling test when CUDA is unavailable. */
    public static synchronized CudaBackend backend() {
        CudaAvailability availability = CudaAvailability.probe();
        assumeTrue(availability.available(), "no CUDA device: " + availability.description());
        if (backend == null) {
            backend = new CudaBackend();
            Runtime.getRuntime().addShutdownHook(new Thread(backend::shutdown));
        }
        return backend;
    }

    /** The CUDA paged attention kernel. */
    public static CudaPagedAttention attention() {
        return ATTENTION;
    }
}
