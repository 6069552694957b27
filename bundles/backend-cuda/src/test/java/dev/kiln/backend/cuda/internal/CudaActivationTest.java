package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import dev.kiln.backend.cuda.CudaAvailability;
import dev.kiln.backend.cuda.CudaBackend;
import dev.kiln.backend.cuda.CudaFp8Quantizer;
import dev.kiln.backend.cuda.CudaInt4Quantizer;
import dev.kiln.backend.cuda.CudaInt8Quantizer;
import dev.kiln.backend.cuda.CudaPagedAttention;
import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.osgi.service.component.ComponentContext;

/**
 * The bundle's start-up decision: without CUDA the backend, attention and quantizer components stay disabled and
 * one line says why; with CUDA exactly those five are enabled.
 */
class CudaActivationTest {
    /** A component context that records which components were enabled and supports nothing else. */
    private static ComponentContext recording(List<String> enabled) {
        return (ComponentContext) Proxy.newProxyInstance(CudaActivationTest.class.getClassLoader(),
                new Class<?>[] {ComponentContext.class}, (proxy, method, args) -> {
                    if (method.getName().equals("enableComponent")) {
                        enabled.add((String) args[0]);
                        return null;
                    }
                    throw new UnsupportedOperationException(method.getName());
                });
    }

    @Test
    void withoutCudaNothingIsEnabledAndOneLineSaysWhy() {
        List<String> enabled = new ArrayList<>();
        String line = CudaActivation.enableIfAvailable(
                new CudaAvailability(false, "no CUDA driver: libcuda.so.1 not found"), recording(enabled));
        assertTrue(enabled.isEmpty(), "enabled " + enabled);
        assertEquals("CUDA backend inactive: no CUDA driver: libcuda.so.1 not found; the CPU backend serves (an engine configured for backend cuda waits for one)", line);
        assertFalse(line.contains("\n"), "one line");
    }

    @Test
    void withCudaTheBackendItsAttentionKernelAndItsQuantizersAreEnabled() {
        List<String> enabled = new ArrayList<>();
        String line = CudaActivation.enableIfAvailable(new CudaAvailability(true, "1 device(s), first NVIDIA H100"),
                recording(enabled));
        assertEquals(List.of(CudaInt8Quantizer.class.getName(), CudaInt4Quantizer.class.getName(),
                CudaFp8Quantizer.class.getName(), CudaBackend.class.getName(), CudaPagedAttention.class.getName()), enabled);
        assertTrue(line.startsWith("CUDA backend enabled: "), line);
    }

    /** On a machine without a driver (CI), the real probe says so by name, and activation enables nothing. */
    @Test
    void theProbeOnAMachineWithoutADriverNamesTheMissingLibrary() {
        CudaAvailability availability = CudaAvailability.probe();
        assumeFalse(availability.available(), "this machine has CUDA");
        List<String> enabled = new ArrayList<>();
        new CudaActivation(recording(enabled));
        assertTrue(enabled.isEmpty());
        assertFalse(availability.description().isBlank());
        if (availability.description().startsWith("no CUDA driver")) {
            assertTrue(availability.description().contains("libcuda.so.1"), availability.description());
        }
    }
}
