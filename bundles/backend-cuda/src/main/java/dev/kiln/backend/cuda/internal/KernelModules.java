package dev.kiln.backend.cuda.internal;

import dev.kiln.backend.cuda.bindings.CudaDriver;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * The modules one kernel source's units were loaded into ({@link KernelCompiler#units}), searched by kernel name:
 * each kernel is defined by one unit, and which one is the source's business alone.
 */
final class KernelModules implements AutoCloseable {
    private final CudaDriver driver;
    private final String source;
    private final List<MemorySegment> modules;

    private KernelModules(CudaDriver driver, String source, List<MemorySegment> modules) {
        this.driver = driver;
        this.source = source;
        this.modules = List.copyOf(modules);
    }

    /**
     * Loads the CUBINs of a source's units into the current context; if one fails to load, those loaded before it
     * are unloaded.
     */
    static KernelModules load(CudaDriver driver, String source, List<byte[]> images) {
        List<MemorySegment> loaded = new ArrayList<>(images.size());
        try {
            for (byte[] image : images) loaded.add(driver.loadModule(image));
        } catch (RuntimeException e) {
            for (MemorySegment module : loaded) {
                try {
                    driver.unloadModule(module);
                } catch (RuntimeException suppressed) {
                    e.addSuppressed(suppressed);
                }
            }
            throw e;
        }
        return new KernelModules(driver, source, loaded);
    }

    /**
     * A kernel by its name, from whichever unit defines it.
     *
     * @throws IllegalStateException when no unit does
     */
    MemorySegment function(String name) {
        for (MemorySegment module : modules) {
            MemorySegment function = driver.findFunction(module, name);
            if (function != null) return function;
        }
        throw new IllegalStateException("no unit of " + source + " defines the kernel " + name);
    }

    @Override
    public void close() {
        for (MemorySegment module : modules) driver.unloadModule(module);
    }
}
