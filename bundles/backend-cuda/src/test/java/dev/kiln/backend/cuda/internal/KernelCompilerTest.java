package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.kiln.backend.cuda.bindings.LibraryNotFoundException;
import dev.kiln.backend.cuda.bindings.Nvrtc;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The kernel source compiles with NVRTC for Hopper and Ampere, in units that together define every kernel the backend
 * resolves, each in one unit, and the disk cache serves an unchanged source without compiling. Needs NVRTC (no GPU): skipped where it is absent.
 */
class KernelCompilerTest {
    private static Nvrtc nvrtc;

    @BeforeAll
    static void loadNvrtc() {
        try {
            nvrtc = Nvrtc.load();
        } catch (LibraryNotFoundException e) {
            assumeTrue(false, "NVRTC is not installed: " + e.getMessage());
        }
    }

    @Test
    void theKernelsCompileForHopperInUnitsThatTogetherDefineEveryKernelTheBackendLoadsOnce(@TempDir Path cache) {
        KernelCompiler compiler = new KernelCompiler(nvrtc, cache);
        List<byte[]> units = compiler.kernels(KernelCompiler.architecture(9, 0));
        int expected = KernelCompiler.unitCount(KernelCompiler.kernelSource());
        assertTrue(expected > 1, "kernels.cu compiles in units");
        assertEquals(expected, units.size());
        assertEquals(expected, compiler.compilations());
        for (byte[] cubin : units) {
            // sm_90a: the architecture-specific target, whose instructions only Hopper runs.
            String text = new String(cubin, StandardCharsets.ISO_8859_1);
            assertTrue(text.contains("sm_90a") || containsElfMachineFlags(cubin), "a unit not compiled for sm_90a");
        }
        assertEveryKernelInOneUnit(units, Kernels.NAMES, KernelCompiler.SOURCE);
    }

    @Test
    void theWeightFormatsKernelsCompileForHopperAndAmpereIntoCacheEntriesOfTheirOwn(@TempDir Path cache) throws Exception {
        KernelCompiler compiler = new KernelCompiler(nvrtc, cache);
        int units = KernelCompiler.unitCount(KernelCompiler.source(QuantKernels.SOURCE));
        List<byte[]> hopper = null;
        for (String architecture : new String[] {"sm_90a", "sm_80"}) {
            List<byte[]> compiled = compiler.units(QuantKernels.SOURCE, architecture);
            if (hopper == null) hopper = compiled;
            assertEveryKernelInOneUnit(compiled, QuantKernels.NAMES, QuantKernels.SOURCE + " for " + architecture);
        }
        assertEquals(2 * units, compiler.compilations());
        try (var files = Files.list(cache)) {
            assertEquals(2 * units, files.count(), "one cached CUBIN per unit and architecture");
        }
        KernelCompiler again = new KernelCompiler(nvrtc, cache);
        List<byte[]> cached = again.units(QuantKernels.SOURCE, "sm_90a");
        for (int unit = 0; unit < units; unit++) assertArrayEquals(hopper.get(unit), cached.get(unit));
        assertEquals(0, again.compilations(), "an unchanged source must come from the cache");
        assertThrows(IllegalStateException.class, () -> again.units("missing.cu", "sm_90a"));
    }

    @Test
    void theGroupedKernelsCompileForHopperAndAmpere(@TempDir Path cache) {
        KernelCompiler compiler = new KernelCompiler(nvrtc, cache);
        for (String architecture : new String[] {"sm_90a", "sm_80"}) {
            List<byte[]> units = compiler.units(GroupedKernels.SOURCE, architecture);
            assertEquals(1, units.size(), "a source without unit guards is one program");
            assertEveryKernelInOneUnit(units, GroupedKernels.NAMES, GroupedKernels.SOURCE + " for " + architecture);
        }
    }

    @Test
    void aSecondRequestIsServedFromTheCacheAndADifferentArchitectureIsCompiledAgain(@TempDir Path cache) throws Exception {
        KernelCompiler first = new KernelCompiler(nvrtc, cache);
        List<byte[]> compiled = first.kernels("sm_90a");
        int units = compiled.size();
        assertEquals(units, first.compilations());
        try (var files = Files.list(cache)) {
            assertEquals(units, files.count(), "one cached CUBIN a unit");
        }

        KernelCompiler second = new KernelCompiler(nvrtc, cache);
        List<byte[]> again = second.kernels("sm_90a");
        for (int unit = 0; unit < units; unit++) assertArrayEquals(compiled.get(unit), again.get(unit));
        assertEquals(0, second.compilations(), "an unchanged source must come from the cache");

        // One unit's entry gone from the cache: only that unit compiles again.
        try (var files = Files.list(cache)) {
            Files.delete(files.sorted().findFirst().orElseThrow());
        }
        KernelCompiler third = new KernelCompiler(nvrtc, cache);
        List<byte[]> mended = third.kernels("sm_90a");
        assertEquals(1, third.compilations());
        for (int unit = 0; unit < units; unit++) assertArrayEquals(compiled.get(unit), mended.get(unit));

        List<byte[]> ampere = second.kernels("sm_80");
        assertEquals(units, second.compilations());
        assertTrue(KernelCompiler.isElf(ampere.get(0)));
        assertTrue(!java.util.Arrays.equals(compiled.get(0), ampere.get(0)), "two architectures, two different images");
    }

    @Test
    void aChangedSourceIsRecompiledAndACorruptCacheEntryIsReplaced(@TempDir Path cache) throws Exception {
        KernelCompiler compiler = new KernelCompiler(nvrtc, cache);
        String source = "extern \"C\" __global__ void k(float* x) { x[threadIdx.x] += 1.0f; }\n";
        compiler.cubin(source, "sm_90a");
        compiler.cubin(source + "// changed\n", "sm_90a");
        assertEquals(2, compiler.compilations());

        try (var files = Files.list(cache)) {
            for (Path p : files.toList()) Files.write(p, new byte[] {1, 2, 3});
        }
        byte[] again = compiler.cubin(source, "sm_90a");
        assertTrue(KernelCompiler.isElf(again));
        assertEquals(3, compiler.compilations(), "a corrupt entry is compiled again");
    }

    @Test
    void aCompilationErrorCarriesTheCompilerLog() {
        KernelCompiler compiler = new KernelCompiler(nvrtc, null);
        var e = assertThrows(Nvrtc.CompilationException.class,
                () -> compiler.cubin("extern \"C\" __global__ void k(float* x) { x[0] = undefined_name; }", "sm_90a"));
        assertTrue(e.log().contains("undefined_name"), e.log());
    }

    @Test
    void hopperGetsItsArchitectureSpecificTarget() {
        assertEquals("sm_90a", KernelCompiler.architecture(9, 0));
        assertEquals("sm_80", KernelCompiler.architecture(8, 0));
        assertEquals("sm_89", KernelCompiler.architecture(8, 9));
        assertEquals("sm_100", KernelCompiler.architecture(10, 0));
        assertThrows(IllegalArgumentException.class, () -> KernelCompiler.architecture(0, 0));
    }

    /** Each unit is an ELF image defining kernels, none defined twice, and every name the Java side loads defined. */
    private static void assertEveryKernelInOneUnit(List<byte[]> units, String[] names, String what) {
        Map<String, Integer> unitOf = new HashMap<>();
        for (int unit = 0; unit < units.size(); unit++) {
            byte[] cubin = units.get(unit);
            assertTrue(KernelCompiler.isElf(cubin), "NVRTC returned no ELF image for unit " + unit + " of " + what);
            Set<String> kernels = CubinKernels.of(cubin);
            assertFalse(kernels.isEmpty(), "unit " + unit + " of " + what + " defines no kernel");
            for (String kernel : kernels) {
                Integer before = unitOf.put(kernel, unit);
                assertNull(before, kernel + " is defined by units " + before + " and " + unit + " of " + what);
            }
        }
        for (String name : names) assertTrue(unitOf.containsKey(name), "no unit of " + what + " defines the kernel " + name);
    }

    /** NVRTC records the target in the ELF header's flags rather than as a string in some versions. */
    private static boolean containsElfMachineFlags(byte[] cubin) {
        // e_flags of a 64-bit ELF is at offset 48; CUDA stores the SM version in its low bits.
        int flags = (cubin[48] & 0xff) | (cubin[49] & 0xff) << 8 | (cubin[50] & 0xff) << 16 | (cubin[51] & 0xff) << 24;
        return (flags & 0xff) == 90 || ((flags >> 8) & 0xff) == 90;
    }
}
