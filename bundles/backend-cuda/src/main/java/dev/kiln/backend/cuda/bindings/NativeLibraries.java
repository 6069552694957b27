package dev.kiln.backend.cuda.bindings;

import java.io.File;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * Finds the CUDA shared libraries in the standard places and binds their functions.
 *
 * <p>Directories are searched in this order: those named by the system property {@value #PATH_PROPERTY} and the
 * environment variable {@value #PATH_ENVIRONMENT} (path lists), the dynamic loader's own search by file name
 * ({@code LD_LIBRARY_PATH}, the ldconfig cache), {@code $CUDA_HOME} and {@code $CUDA_PATH}, then the CUDA
 * toolkit's and the driver's usual directories. Libraries stay loaded for the life of the JVM: the driver does
 * not support being unloaded and reloaded.
 */
public final class NativeLibraries {
    /** System property: extra directories to search first, separated by {@link File#pathSeparator}. */
    public static final String PATH_PROPERTY = "kiln.cuda.libraryPath";
    /** Environment variable: the same as {@link #PATH_PROPERTY}. */
    public static final String PATH_ENVIRONMENT = "KILN_CUDA_LIBRARY_PATH";

    private static final List<String> STANDARD_DIRECTORIES = List.of(
            "/usr/local/cuda/targets/x86_64-linux/lib",
            "/usr/local/cuda/lib64",
            "/usr/local/nvidia/lib64",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib64",
            "/lib/x86_64-linux-gnu",
            "/usr/lib/wsl/lib");

    private static final Linker LINKER = Linker.nativeLinker();

    private NativeLibraries() {}

    /** The directories searched explicitly, in order (the dynamic loader's own search comes after the first group). */
    public static List<Path> searchDirectories() {
        Set<Path> dirs = new LinkedHashSet<>();
        dirs.addAll(explicitDirectories());
        for (String variable : List.of("CUDA_HOME", "CUDA_PATH")) {
            String home = System.getenv(variable);
            if (home != null && !home.isBlank()) {
                dirs.add(Path.of(home, "targets", "x86_64-linux", "lib"));
                dirs.add(Path.of(home, "lib64"));
            }
        }
        for (String d : STANDARD_DIRECTORIES) dirs.add(Path.of(d));
        return List.copyOf(dirs);
    }

    private static List<Path> explicitDirectories() {
        List<Path> dirs = new ArrayList<>();
        for (String list : new String[] {System.getProperty(PATH_PROPERTY), System.getenv(PATH_ENVIRONMENT)}) {
            if (list == null) continue;
            for (String entry : list.split(File.pathSeparator)) {
                if (!entry.isBlank()) dirs.add(Path.of(entry.trim()));
            }
        }
        return dirs;
    }

    /**
     * Opens a library by its file name (e.g. {@code libcuda.so.1}).
     *
     * @throws LibraryNotFoundException naming the file and every place looked at
     */
    public static OpenedLibrary open(String fileName) {
        for (Path dir : explicitDirectories()) {
            OpenedLibrary found = tryPath(dir.resolve(fileName));
            if (found != null) return found;
        }
        try {
            // The dynamic loader's own search: LD_LIBRARY_PATH, the ldconfig cache, the driver's registered path.
            return new OpenedLibrary(fileName, null, SymbolLookup.libraryLookup(fileName, Arena.global()));
        } catch (IllegalArgumentException notFound) {
            // fall through to the well-known directories
        }
        for (Path dir : searchDirectories()) {
            OpenedLibrary found = tryPath(dir.resolve(fileName));
            if (found != null) return found;
        }
        throw new LibraryNotFoundException(fileName + " not found (searched the dynamic loader's path and "
                + searchDirectories() + ")");
    }

    private static OpenedLibrary tryPath(Path file) {
        if (!Files.isRegularFile(file)) return null;
        try {
            return new OpenedLibrary(file.getFileName().toString(), file.getParent(),
                    SymbolLookup.libraryLookup(file, Arena.global()));
        } catch (IllegalArgumentException unloadable) {
            return null;
        }
    }

    /**
     * A library that was opened.
     *
     * @param name      its file name
     * @param directory where it was found, or null when the dynamic loader found it by name
     * @param symbols   its symbols
     */
    public record OpenedLibrary(String name, Path directory, SymbolLookup symbols) {
        /**
         * A downcall handle for one of its functions.
         *
         * @param critical whether the call is short and never blocks or calls back (skips the thread-state
         *                 transition; used for launches and asynchronous copies on the hot path)
         * @throws LibraryNotFoundException if the library lacks the symbol (a driver or toolkit too old)
         */
        public MethodHandle function(String symbol, FunctionDescriptor descriptor, boolean critical) {
            var address = symbols.find(symbol).orElseThrow(() ->
                    new LibraryNotFoundException(name + " has no function " + symbol + " (too old a version?)"));
            return critical
                    ? LINKER.downcallHandle(address, descriptor, Linker.Option.critical(false))
                    : LINKER.downcallHandle(address, descriptor);
        }

        /** A downcall handle for a function that may block (the usual case). */
        public MethodHandle function(String symbol, FunctionDescriptor descriptor) {
            return function(symbol, descriptor, false);
        }
    }
}
