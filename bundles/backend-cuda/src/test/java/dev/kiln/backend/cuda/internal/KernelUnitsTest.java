package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/**
 * The units kernels.cu's guards name are the ones {@link KernelCompiler} compiles (a unit it skipped would leave its
 * kernels undefined at start-up on a GPU; one it compiled in vain would cost a compilation), and every guard is
 * closed. Runs without NVRTC; {@code KernelCompilerTest} compiles the units where NVRTC is present.
 */
class KernelUnitsTest {
    @Test
    void theSourceGuardsNameExactlyTheUnitsTheCompilerCompiles() {
        String source = KernelCompiler.kernelSource();
        Set<Integer> named = new TreeSet<>();
        Matcher m = Pattern.compile("#if KILN_IN_UNIT\\((\\d+)\\)").matcher(source);
        while (m.find()) named.add(Integer.parseInt(m.group(1)));
        assertEquals(new TreeSet<>(IntStream.range(0, KernelCompiler.UNITS).boxed().toList()), named);
    }

    @Test
    void everyConditionalOfTheSourceIsClosed() {
        int depth = 0;
        for (String line : KernelCompiler.kernelSource().split("\n")) {
            String directive = line.strip();
            if (directive.startsWith("#if")) depth++;
            else if (directive.startsWith("#endif")) depth--;
            if (depth < 0) break;
        }
        assertEquals(0, depth, "#if and #endif of kernels.cu do not pair up");
    }
}
