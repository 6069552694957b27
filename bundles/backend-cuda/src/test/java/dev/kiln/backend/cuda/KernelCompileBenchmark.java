package dev.kiln.backend.cuda;

import dev.kiln.backend.cuda.bindings.Nvrtc;
import dev.kiln.backend.cuda.internal.KernelCompiler;
import dev.kiln.backend.cuda.internal.QuantKernels;

/**
 * How long a first start spends compiling the backend's kernels: each kernel source (kernels.cu, quant_kernels.cu) as
 * one NVRTC program against its units on the pool {@link KernelCompiler#units} uses (one thread a processor), without
 * a cache, alternated for a few rounds. Needs NVRTC, not a GPU.
 *
 * <pre>java --enable-native-access=ALL-UNNAMED -cp ... dev.kiln.backend.cuda.KernelCompileBenchmark [ARCHITECTURE [ROUNDS]]</pre>
 */
public final class KernelCompileBenchmark {
    private KernelCompileBenchmark() {}

    public static void main(String[] args) {
        String architecture = args.length > 0 ? args[0] : "sm_90a";
        int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 2;
        Nvrtc nvrtc = Nvrtc.load();
        System.out.printf("%s, NVRTC %d, %d processors%n", architecture, nvrtc.version(),
                Runtime.getRuntime().availableProcessors());
        for (int round = 1; round <= rounds; round++) {
            for (String resource : new String[] {KernelCompiler.SOURCE, QuantKernels.SOURCE}) {
                String source = KernelCompiler.source(resource);
                long start = System.nanoTime();
                new KernelCompiler(nvrtc, null).cubin(source, resource, architecture);
                double whole = (System.nanoTime() - start) / 1e9;
                start = System.nanoTime();
                new KernelCompiler(nvrtc, null).units(resource, architecture);
                double units = (System.nanoTime() - start) / 1e9;
                System.out.printf("round %d, %s: one program %.1f s, %d units %.1f s (%.2fx)%n", round, resource, whole,
                        KernelCompiler.unitCount(source), units, whole / units);
            }
        }
    }
}
