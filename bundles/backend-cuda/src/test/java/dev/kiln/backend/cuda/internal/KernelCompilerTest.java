package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.kiln.backend.cuda.bindings.LibraryNotFoundException;
import dev.kiln.backend.cuda.bindings.Nvrtc;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The kernel source compiles with NVRTC for Hopper and Ampere, defines every kernel the backend resolves, and the
 * disk cache serves an unchanged source without compiling. Needs NVRTC (no GPU): skipped where it is absent.
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
    void theKernelsCompileForHopperWithEveryKernelTheBackendLoads(@TempDir Path cache) {
        KernelCompiler compiler = new KernelCompiler(nvrtc, cache);
        byte[] cubin = compiler.kernels(KernelCompiler.architecture(9, 0));
        assertTrue(KernelCompiler.isElf(cubin), "NVRTC returned no ELF image");
        String symbols = new String(cubin, StandardCharsets.ISO_8859_1);
        for (String name : Kernels.NAMES) {
            assertTrue(symbols.contains(name + "\0"), "the CUBIN defines no kernel " + name);
        }
        // sm_90a: the architecture-specific target, whose instructions only Hopper runs.
        assertTrue(symbols.contains("sm_90a") || containsElfMachineFlags(cubin), "not compiled for sm_90a");
    }

    @Test
    void theWeightFormatsKernelsCompileForHopperAndAmpereIntoCacheEntriesOfTheirOwn(@TempDir Path cache) throws Exception {
        KernelCompiler compiler = new KernelCompiler(nvrtc, cache);
        byte[] hopper = null;
        for (String architecture : new String[] {"sm_90a", "sm_80"}) {
            byte[] cubin = compiler.compile(QuantKernels.SOURCE, architecture);
            if (hopper == null) hopper = cubin;
            assertTrue(KernelCompiler.isElf(cubin), "NVRTC returned no ELF image for " + architecture);
            String symbols = new String(cubin, StandardCharsets.ISO_8859_1);
            for (String name : QuantKernels.NAMES) {
                assertTrue(symbols.contains(name + "\0"), "the " + architecture + " CUBIN defines no kernel " + name);
            }
        }
        compiler.kernels("sm_90a");
        assertEquals(3, compiler.compilations());
        try (var files = Files.list(cache)) {
            assertEquals(3, files.count(), "one cached CUBIN per source and architecture");
        }
        KernelCompiler again = new KernelCompiler(nvrtc, cache);
        assertArrayEquals(hopper, again.compile(QuantKernels.SOURCE, "sm_90a"));
        assertEquals(0, again.compilations(), "an unchanged source must come from the cache");
        assertThrows(IllegalStateException.class, () -> again.compile("missing.cu", "sm_90a"));
    }

    @Test
    void theGroupedKernelsCompileForHopperAndAmpere(@TempDir Path cache) {
        KernelCompiler compiler = new KernelCompiler(nvrtc, cache);
        for (String architecture : new String[] {"sm_90a", "sm_80"}) {
            byte[] cubin = compiler.compile(GroupedKernels.SOURCE, architecture);
            assertTrue(KernelCompiler.isElf(cubin), "NVRTC returned no ELF image for " + architecture);
            String symbols = new String(cubin, StandardCharsets.ISO_8859_1);
            for (String name : GroupedKernels.NAMES) {
                assertTrue(symbols.contains(name + "\0"), "the " + architecture + " CUBIN defines no kernel " + name);
            }
        }
    }

    @Test
    void aSecondRequestIsServedFromTheCacheAndADifferentArchitectureIsCompiledAgain(@TempDir Path cache) throws Exception {
        KernelCompiler first = new KernelCompiler(nvrtc, cache);
        byte[] compiled = first.kernels("sm_90a");
        assertEquals(1, first.compilations());
        try (var files = Files.list(cache)) {
            assertEquals(1, files.count(), "one cached CUBIN");
        }

        KernelCompiler second = new KernelCompiler(nvrtc, cache);
        assertArrayEquals(compiled, second.kernels("sm_90a"));
        assertEquals(0, second.compilations(), "an unchanged source must come from the cache");

        byte[] ampere = second.kernels("sm_80");
        assertEquals(1, second.compilations());
        assertTrue(KernelCompiler.isElf(ampere));
        assertTrue(!java.util.Arrays.equals(compiled, ampere), "two architectures, two different images");
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

    /** NVRTC records the target in the ELF header's flags rather than as a string in some versions. */
    private static boolean containsElfMachineFlags(byte[] cubin) {
        // e_flags of a 64-bit ELF is at offset 48; CUDA stores the SM version in its low bits.
        int flags = (cubin[48] & 0xff) | (cubin[49] & 0xff) << 8 | (cubin[50] & 0xff) << 16 | (cubin[51] & 0xff) << 24;
        return (flags & 0xff) == 90 || ((flags >> 8) & 0xff) == 90;
    }
}
