package dev.kiln.backend.cuda.internal;

import dev.kiln.backend.cuda.CudaAvailability;
import dev.kiln.backend.cuda.CudaBackend;
import dev.kiln.backend.cuda.CudaFp8Quantizer;
import dev.kiln.backend.cuda.CudaInt4Quantizer;
import dev.kiln.backend.cuda.CudaInt8Quantizer;
import dev.kiln.backend.cuda.CudaPagedAttention;
import org.osgi.service.component.ComponentContext;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Decides at bundle start whether the CUDA services exist: probes the driver, a device, cuBLAS and NVRTC, and only
 * then enables the backend, attention and quantizer components (all declared disabled). Without a GPU it logs one
 * line and leaves them off, so the engine keeps resolving {@code kiln.name=cpu}; no component fails and no stack trace
 * is printed.
 */
@Component(immediate = true, service = {})
public final class CudaActivation {
    private static final Logger LOG = LoggerFactory.getLogger(CudaActivation.class);

    /**
     * The components enabled when a device is present, the quantizers first: components are enabled one after another,
     * so an engine that finds the backend finds its weight formats too.
     */
    static final String[] COMPONENTS = {CudaInt8Quantizer.class.getName(), CudaInt4Quantizer.class.getName(),
            CudaFp8Quantizer.class.getName(), CudaBackend.class.getName(), CudaPagedAttention.class.getName()};

    /** Probes and enables. */
    @Activate
    public CudaActivation(ComponentContext context) {
        String message = enableIfAvailable(CudaAvailability.probe(), context);
        LOG.info(message);
    }

    /**
     * Enables the CUDA components if CUDA is available.
     *
     * @return the line to log
     */
    static String enableIfAvailable(CudaAvailability availability, ComponentContext context) {
        if (!availability.available()) {
            return "CUDA backend inactive: " + availability.description() + "; the CPU backend serves (an engine configured for backend cuda waits for one)";
        }
        for (String component : COMPONENTS) context.enableComponent(component);
        return "CUDA backend enabled: " + availability.description();
    }
}
