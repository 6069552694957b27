package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/**
 * The unit guards of the kernel sources name units 0, 1, ... without a gap (a unit skipped would be compiled as an
 * empty program, and the kernel count told by the largest guard would be off), and every conditional is closed.
 * Runs without NVRTC; {@code KernelCompilerTest} compiles the units where NVRTC is present.
 */
class KernelUnitsTest {
    private static final String[] SOURCES = {KernelCompiler.SOURCE, QuantKernels.SOURCE, GroupedKernels.SOURCE};

    @Test
    void theGuardsNameEveryUnitFromZeroToTheCountWithoutAGap() {
        for (String resource : SOURCES) {
            String source = KernelCompiler.source(resource);
            Set<Integer> named = new TreeSet<>();
            Matcher m = Pattern.compile("#if KILN_IN_UNIT\\((\\d+)\\)").matcher(source);
            while (m.find()) named.add(Integer.parseInt(m.group(1)));
            int units = KernelCompiler.unitCount(source);
            if (named.isEmpty()) {
                assertEquals(1, units, resource);
            } else {
                assertEquals(new TreeSet<>(IntStream.range(0, units).boxed().toList()), named, resource);
            }
        }
        assertEquals(11, KernelCompiler.unitCount(KernelCompiler.kernelSource()));
        assertEquals(4, KernelCompiler.unitCount(KernelCompiler.source(QuantKernels.SOURCE)));
    }

    @Test
    void everyConditionalOfTheSourcesIsClosed() {
        for (String resource : SOURCES) {
            int depth = 0;
            for (String line : KernelCompiler.source(resource).split("\n")) {
                String directive = line.strip();
                if (directive.startsWith("#if")) depth++;
                else if (directive.startsWith("#endif")) depth--;
                if (depth < 0) break;
            }
            assertEquals(0, depth, "#if and #endif of " + resource + " do not pair up");
        }
    }

    @Test
    void theUnitCountIsOneMoreThanTheLargestGuardOrOne() {
        assertEquals(1, KernelCompiler.unitCount("extern \"C\" __global__ void k() {}"));
        assertEquals(3, KernelCompiler.unitCount("#if KILN_IN_UNIT(0)\n#endif\n#if KILN_IN_UNIT(2)\n#endif\n#if KILN_IN_UNIT(1)\n#endif"));
    }
}
