package dev.kiln.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.backend.cuda.internal.CudaContext;
import dev.kiln.backend.cuda.internal.KernelCompiler;
import dev.kiln.backend.cuda.testing.Gpu;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A kernel cache whose CUBINs are ELF files that the driver refuses (another driver's, or damaged within) costs the
 * next start a compilation, not the device: the context opens, its kernels run, and the cache holds loadable CUBINs
 * again.
 */
class KernelCacheRecoveryTest {
    @TempDir
    Path cache;

    @Test
    void cachedCubinsTheDriverRefusesAreCompiledAgainAndReplaced() throws IOException {
        Gpu.backend(); // skips without a device
        Map<Path, byte[]> good = new HashMap<>();
        try (CudaContext context = CudaContext.open(0, cache)) {
            context.quantKernels(); // a second source, loaded lazily
        }
        for (Path file : cubins()) good.put(file, Files.readAllBytes(file));
        assertTrue(good.size() > 1, "the first start cached " + good.size() + " CUBINs");
        for (Path file : good.keySet()) {
            byte[] damaged = good.get(file).clone();
            // The ELF magic stays (the cache's own check passes); the rest of the header is garbage to the driver.
            Arrays.fill(damaged, 4, Math.min(damaged.length, 64), (byte) 0x5a);
            Files.write(file, damaged);
        }
        try (CudaContext context = CudaContext.open(0, cache)) {
            context.quantKernels();
            float[] values = {1.5f, -2f, 3.25f};
            long device = context.allocate(4L * values.length);
            try {
                context.uploads().write(values, device);
                assertArrayEquals(values, context.readFloats(device, values.length));
            } finally {
                context.free(device);
            }
        }
        for (Path file : cubins()) {
            byte[] now = Files.readAllBytes(file);
            assertTrue(KernelCompiler.isElf(now), file + " is not ELF");
            assertFalse(now[4] == 0x5a && now[5] == 0x5a, file + " still holds the damaged header");
        }
        assertEquals(good.keySet().size(), cubins().size(), "the cache's files");
    }

    private List<Path> cubins() throws IOException {
        try (Stream<Path> files = Files.list(cache)) {
            return files.filter(f -> f.getFileName().toString().endsWith(".cubin")).toList();
        }
    }
}
