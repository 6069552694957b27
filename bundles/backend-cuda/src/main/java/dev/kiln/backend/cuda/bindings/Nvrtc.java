package dev.kiln.backend.cuda.bindings;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * NVRTC ({@code libnvrtc.so.13}), the CUDA run-time compiler, through FFM: compiles CUDA C++ source to a CUBIN for
 * one GPU architecture.
 */
public final class Nvrtc {
    private static final String LIBRARY = "libnvrtc.so.13";

    private final MethodHandle nvrtcVersion;
    private final MethodHandle nvrtcCreateProgram;
    private final MethodHandle nvrtcCompileProgram;
    private final MethodHandle nvrtcGetProgramLogSize;
    private final MethodHandle nvrtcGetProgramLog;
    private final MethodHandle nvrtcGetCUBINSize;
    private final MethodHandle nvrtcGetCUBIN;
    private final MethodHandle nvrtcDestroyProgram;
    private final MethodHandle nvrtcGetErrorString;

    private Nvrtc(NativeLibraries.OpenedLibrary lib) {
        nvrtcVersion = lib.function("nvrtcVersion", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        nvrtcCreateProgram = lib.function("nvrtcCreateProgram",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS));
        nvrtcCompileProgram = lib.function("nvrtcCompileProgram", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS));
        nvrtcGetProgramLogSize = lib.function("nvrtcGetProgramLogSize", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        nvrtcGetProgramLog = lib.function("nvrtcGetProgramLog", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        nvrtcGetCUBINSize = lib.function("nvrtcGetCUBINSize", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        nvrtcGetCUBIN = lib.function("nvrtcGetCUBIN", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        nvrtcDestroyProgram = lib.function("nvrtcDestroyProgram", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        nvrtcGetErrorString = lib.function("nvrtcGetErrorString", FunctionDescriptor.of(ADDRESS, JAVA_INT));
    }

    /**
     * Opens NVRTC. Its built-in headers library, which NVRTC opens by name at compile time, is opened first from the
     * same directory so that the loader finds it even where that directory is on no search path.
     *
     * @throws LibraryNotFoundException if NVRTC or one of its functions is missing
     */
    public static Nvrtc load() {
        NativeLibraries.OpenedLibrary lib = NativeLibraries.open(LIBRARY);
        if (lib.directory() != null) preloadBuiltins(lib.directory());
        return new Nvrtc(lib);
    }

    private static void preloadBuiltins(Path directory) {
        try (DirectoryStream<Path> builtins = Files.newDirectoryStream(directory, "libnvrtc-builtins.so.*")) {
            for (Path b : builtins) {
                try {
                    java.lang.foreign.SymbolLookup.libraryLookup(b, Arena.global());
                } catch (IllegalArgumentException ignored) {
                    // NVRTC reports a missing builtins library itself, with a clearer message
                }
            }
        } catch (IOException ignored) {
            // the directory cannot be listed: NVRTC searches on its own
        }
    }

    /** NVRTC's version as {@code major * 1000 + minor * 10}, comparable with the driver's. */
    public int version() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment major = arena.allocate(JAVA_INT);
            MemorySegment minor = arena.allocate(JAVA_INT);
            check("nvrtcVersion", CudaDriver.call(() -> (int) nvrtcVersion.invokeExact(major, minor)));
            return major.get(JAVA_INT, 0) * 1000 + minor.get(JAVA_INT, 0) * 10;
        }
    }

    /**
     * Compiles one translation unit to a CUBIN.
     *
     * @param source  CUDA C++ source, self-contained (no include files are supplied)
     * @param name    the unit's name in diagnostics
     * @param options compiler options; a real architecture such as {@code --gpu-architecture=sm_90a} makes a CUBIN
     * @throws CompilationException carrying the compiler's log when the source does not compile
     */
    public byte[] compileToCubin(String source, String name, List<String> options) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment programOut = arena.allocate(ADDRESS);
            MemorySegment src = arena.allocateFrom(source);
            MemorySegment unit = arena.allocateFrom(name);
            check("nvrtcCreateProgram", CudaDriver.call(() -> (int) nvrtcCreateProgram.invokeExact(programOut, src, unit, 0,
                    MemorySegment.NULL, MemorySegment.NULL)));
            MemorySegment program = programOut.get(ADDRESS, 0);
            try {
                MemorySegment opts = arena.allocate(ADDRESS, Math.max(1, options.size()));
                for (int i = 0; i < options.size(); i++) opts.setAtIndex(ADDRESS, i, arena.allocateFrom(options.get(i)));
                int compiled = CudaDriver.call(() -> (int) nvrtcCompileProgram.invokeExact(program, options.size(), opts));
                String log = log(arena, program);
                if (compiled != 0) {
                    throw new CompilationException(name + " does not compile (" + errorString(compiled) + ") with "
                            + options + ":\n" + log, log);
                }
                MemorySegment size = arena.allocate(JAVA_LONG);
                check("nvrtcGetCUBINSize", CudaDriver.call(() -> (int) nvrtcGetCUBINSize.invokeExact(program, size)));
                long bytes = size.get(JAVA_LONG, 0);
                if (bytes <= 0) throw new CompilationException(name + ": NVRTC made no CUBIN with " + options
                        + " (a virtual architecture such as compute_90 makes PTX only)", log);
                MemorySegment cubin = arena.allocate(bytes);
                check("nvrtcGetCUBIN", CudaDriver.call(() -> (int) nvrtcGetCUBIN.invokeExact(program, cubin)));
                return cubin.toArray(JAVA_BYTE);
            } finally {
                CudaDriver.call(() -> (int) nvrtcDestroyProgram.invokeExact(programOut));
            }
        }
    }

    private String log(Arena arena, MemorySegment program) {
        MemorySegment size = arena.allocate(JAVA_LONG);
        check("nvrtcGetProgramLogSize", CudaDriver.call(() -> (int) nvrtcGetProgramLogSize.invokeExact(program, size)));
        long bytes = size.get(JAVA_LONG, 0);
        if (bytes <= 1) return "";
        MemorySegment text = arena.allocate(bytes);
        check("nvrtcGetProgramLog", CudaDriver.call(() -> (int) nvrtcGetProgramLog.invokeExact(program, text)));
        return text.getString(0);
    }

    private String errorString(int result) {
        try {
            MemorySegment s = (MemorySegment) nvrtcGetErrorString.invokeExact(result);
            return s.reinterpret(256).getString(0);
        } catch (Throwable t) {
            return "NVRTC error";
        }
    }

    private void check(String call, int result) {
        if (result != 0) throw new CudaException(call, result, errorString(result));
    }

    /** The source did not compile; {@link #log()} holds the compiler's diagnostics. */
    public static final class CompilationException extends RuntimeException {
        private static final long serialVersionUID = 1L;
        private final String log;

        CompilationException(String message, String log) {
            super(message);
            this.log = log;
        }

        /** The compiler's log. */
        public String log() {
            return log;
        }
    }
}
