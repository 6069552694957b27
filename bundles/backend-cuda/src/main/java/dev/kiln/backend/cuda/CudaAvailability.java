package dev.kiln.backend.cuda;

import dev.kiln.backend.cuda.bindings.Cublas;
import dev.kiln.backend.cuda.bindings.CudaDriver;
import dev.kiln.backend.cuda.bindings.CudaException;
import dev.kiln.backend.cuda.bindings.LibraryNotFoundException;
import dev.kiln.backend.cuda.bindings.Nvrtc;

/**
 * Whether this machine can run the CUDA backend: the driver library loads and initialises, at least one device is
 * present, and cuBLAS and NVRTC load. Probed once per JVM; the probe allocates nothing on the device.
 *
 * @param available   whether every requirement is met
 * @param description the first device's description when available, else what is missing
 */
public record CudaAvailability(boolean available, String description) {
    private static volatile CudaAvailability probed;

    /** The result of probing this machine (cached after the first call). */
    public static CudaAvailability probe() {
        CudaAvailability result = probed;
        if (result == null) {
            synchronized (CudaAvailability.class) {
                result = probed;
                if (result == null) {
                    result = run();
                    probed = result;
                }
            }
        }
        return result;
    }

    private static CudaAvailability run() {
        CudaDriver driver;
        try {
            driver = CudaDriver.load();
        } catch (LibraryNotFoundException | LinkageError e) {
            return new CudaAvailability(false, "no CUDA driver: " + e.getMessage());
        }
        int devices;
        String first;
        try {
            driver.init();
            devices = driver.deviceCount();
            if (devices == 0) return new CudaAvailability(false, "the CUDA driver reports no device");
            int device = driver.device(0);
            first = driver.deviceName(device) + " (compute capability "
                    + driver.attribute(device, CudaDriver.ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) + "."
                    + driver.attribute(device, CudaDriver.ATTRIBUTE_COMPUTE_CAPABILITY_MINOR) + ")";
        } catch (CudaException e) {
            return new CudaAvailability(false, "the CUDA driver cannot start: " + e.getMessage());
        }
        try {
            Cublas.load();
        } catch (LibraryNotFoundException | LinkageError e) {
            return new CudaAvailability(false, "no cuBLAS: " + e.getMessage());
        }
        try {
            Nvrtc.load();
        } catch (LibraryNotFoundException | LinkageError e) {
            return new CudaAvailability(false, "no NVRTC: " + e.getMessage());
        }
        return new CudaAvailability(true, devices + " device(s), first " + first);
    }
}
