package dev.kiln.backend.cuda.internal;

import dev.kiln.backend.cuda.bindings.Nvrtc;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Compiles the bundle's kernel sources (resources next to this class: {@value #SOURCE}, {@code quant_kernels.cu})
 * with NVRTC for one GPU architecture and keeps each CUBIN in a cache folder, keyed by a hash of the source, the
 * options and the NVRTC version: a changed kernel or compiler recompiles, an unchanged one loads in milliseconds. A
 * cache that cannot be written only costs the next start a compilation.
 *
 * <p>A source whose entry points are grouped by {@code #if KILN_IN_UNIT(u)} guards ({@value #SOURCE}: 11 units, see
 * the top of the file) compiles as one program per unit ({@code -DKILN_UNIT=u}), on as many threads as there are
 * processors ({@link #units}): NVRTC compiles a program on one thread, and {@value #SOURCE} took about 25 s as one
 * program on a 2-core machine against 12 s in units. Each unit's machine code is that of the single program (its
 * kernels' code sections compared byte for byte).
 */
public final class KernelCompiler {
    /** System property naming the cache folder. */
    public static final String CACHE_PROPERTY = "kiln.cuda.kernelCache";
    /** The backend's kernel source, a resource next to this class. */
    public static final String SOURCE = "kernels.cu";
    private static final Pattern UNIT_GUARD = Pattern.compile("#if KILN_IN_UNIT\\((\\d+)\\)");

    private static final Logger LOG = LoggerFactory.getLogger(KernelCompiler.class);

    private final Nvrtc nvrtc;
    private final Path cacheDirectory;
    private final AtomicInteger compilations = new AtomicInteger();

    /**
     * @param cacheDirectory where CUBINs are kept, or null for no cache
     */
    public KernelCompiler(Nvrtc nvrtc, Path cacheDirectory) {
        this.nvrtc = Objects.requireNonNull(nvrtc, "nvrtc");
        this.cacheDirectory = cacheDirectory;
    }

    /** The cache folder from {@value #CACHE_PROPERTY}, else {@code ~/.cache/kiln/cuda-kernels}. */
    public static Path defaultCacheDirectory() {
        String configured = System.getProperty(CACHE_PROPERTY);
        if (configured != null && !configured.isBlank()) return Path.of(configured);
        return Path.of(System.getProperty("user.home"), ".cache", "kiln", "cuda-kernels");
    }

    /**
     * The NVRTC target for a compute capability: the architecture-specific {@code sm_90a} on Hopper (its wgmma and
     * setmaxnreg instructions exist only there), {@code sm_XY} elsewhere.
     */
    public static String architecture(int major, int minor) {
        if (major < 1 || minor < 0) throw new IllegalArgumentException("compute capability " + major + "." + minor);
        return "sm_" + major + minor + (major == 9 && minor == 0 ? "a" : "");
    }

    /** The options the kernels are compiled with for an architecture. */
    public static List<String> options(String architecture) {
        return List.of("--gpu-architecture=" + architecture, "--std=c++17");
    }

    /** The backend's kernel source ({@value #SOURCE}). */
    public static String kernelSource() {
        return source(SOURCE);
    }

    /**
     * A kernel source of the bundle: the resource of that name next to this class.
     *
     * @throws IllegalStateException when the bundle has no such resource
     */
    public static String source(String resource) {
        try (InputStream in = KernelCompiler.class.getResourceAsStream(resource)) {
            if (in == null) throw new IllegalStateException("kernel source " + resource + " is missing from the bundle");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * The CUBINs of the backend's kernels ({@value #SOURCE}) for an architecture, one per unit in unit order, each from
     * the cache when present; those missing are compiled in parallel.
     *
     * @throws Nvrtc.CompilationException with the compiler's log when a unit does not compile
     */
    public List<byte[]> kernels(String architecture) {
        return units(SOURCE, architecture);
    }

    /**
     * The units a kernel source compiles as: one more than the largest {@code u} of its {@code #if KILN_IN_UNIT(u)}
     * guards, or 1 (the whole source) where it has none.
     */
    public static int unitCount(String source) {
        Matcher guard = UNIT_GUARD.matcher(source);
        int largest = -1;
        while (guard.find()) largest = Math.max(largest, Integer.parseInt(guard.group(1)));
        return Math.max(1, largest + 1);
    }

    /**
     * The CUBINs of one of the bundle's kernel sources (see {@link #source}) for an architecture, one per unit
     * ({@link #unitCount}; each compiled with {@code -DKILN_UNIT=u} where there are several) in unit order, each from
     * the cache when present; those missing are compiled in parallel, one thread a processor.
     *
     * @throws Nvrtc.CompilationException with the compiler's log when a unit does not compile
     * @throws IllegalStateException when the bundle has no such resource
     */
    public List<byte[]> units(String resource, String architecture) {
        return units(resource, architecture, true);
    }

    /**
     * The same compiled afresh, whatever the cache holds, and stored in it: for cached CUBINs that are ELF files but
     * that the driver refuses to load (written by another driver's NVRTC, or damaged within).
     */
    public List<byte[]> unitsCompiledAgain(String resource, String architecture) {
        return units(resource, architecture, false);
    }

    private List<byte[]> units(String resource, String architecture, boolean fromCache) {
        String source = source(resource);
        int units = unitCount(source);
        List<List<String>> options = new ArrayList<>(units);
        for (int unit = 0; unit < units; unit++) {
            List<String> unitOptions = new ArrayList<>(options(architecture));
            if (units > 1) unitOptions.add("-DKILN_UNIT=" + unit);
            options.add(List.copyOf(unitOptions));
        }
        byte[][] images = new byte[units][];
        List<Integer> missing = new ArrayList<>();
        for (int unit = 0; unit < units; unit++) {
            images[unit] = fromCache ? cached(source, options.get(unit), architecture) : null;
            if (images[unit] == null) missing.add(unit);
        }
        if (missing.isEmpty()) return List.of(images);
        long start = System.nanoTime();
        int threads = Math.min(missing.size(), Runtime.getRuntime().availableProcessors());
        ExecutorService pool = Executors.newFixedThreadPool(threads, Thread.ofPlatform().daemon().name("kiln-nvrtc-", 0).factory());
        try {
            List<Future<byte[]>> compiled = new ArrayList<>();
            for (int unit : missing) {
                List<String> unitOptions = options.get(unit);
                compiled.add(pool.submit(() -> compileAndStore(source, resource, unitOptions, architecture)));
            }
            for (int i = 0; i < missing.size(); i++) images[missing.get(i)] = result(compiled.get(i));
        } finally {
            pool.shutdownNow();
        }
        LOG.info("compiled CUDA kernels {} for {} in {} ms ({} of its {} units, {} at a time)", resource, architecture,
                (System.nanoTime() - start) / 1_000_000, missing.size(), units, threads);
        return List.of(images);
    }

    /** The outcome of a compilation on the pool: its image, or the compiler's own exception. */
    private static byte[] result(Future<byte[]> compilation) {
        try {
            return compilation.get();
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RuntimeException r) throw r;
            if (e.getCause() instanceof Error error) throw error;
            throw new IllegalStateException(e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while compiling the CUDA kernels", e);
        }
    }

    /**
     * The CUBIN of one of the bundle's kernel sources (see {@link #source}) for an architecture, from the cache when
     * present.
     *
     * @throws Nvrtc.CompilationException with the compiler's log when the source does not compile
     */
    public byte[] compile(String resource, String architecture) {
        return cubin(source(resource), resource, architecture);
    }

    /**
     * The CUBIN of a source for an architecture, from the cache when present.
     *
     * @throws Nvrtc.CompilationException with the compiler's log when the source does not compile
     */
    public byte[] cubin(String source, String architecture) {
        return cubin(source, SOURCE, architecture);
    }

    /**
     * The CUBIN of a source for an architecture, from the cache when present.
     *
     * @param name the source's file name, as the compiler's messages call it
     * @throws Nvrtc.CompilationException with the compiler's log when the source does not compile
     */
    public byte[] cubin(String source, String name, String architecture) {
        List<String> options = options(architecture);
        byte[] image = cached(source, options, architecture);
        if (image != null) return image;
        long start = System.nanoTime();
        image = compileAndStore(source, name, options, architecture);
        LOG.info("compiled CUDA kernels {} for {} in {} ms", name, architecture, (System.nanoTime() - start) / 1_000_000);
        return image;
    }

    /** How many times this compiler ran NVRTC (cache misses; each unit counts). */
    public int compilations() {
        return compilations.get();
    }

    /** The cached CUBIN of a source compiled with these options, or null. */
    private byte[] cached(String source, List<String> options, String architecture) {
        Path cached = cacheFile(source, options, architecture);
        if (cached == null || !Files.isRegularFile(cached)) return null;
        try {
            byte[] image = Files.readAllBytes(cached);
            if (isElf(image)) return image;
        } catch (IOException e) {
            LOG.debug("cannot read cached kernels {}: {}", cached, e.toString());
        }
        return null;
    }

    private byte[] compileAndStore(String source, String name, List<String> options, String architecture) {
        byte[] image = nvrtc.compileToCubin(source, name, options);
        compilations.incrementAndGet();
        Path cached = cacheFile(source, options, architecture);
        if (cached != null) store(cached, image);
        return image;
    }

    private Path cacheFile(String source, List<String> options, String architecture) {
        return cacheDirectory == null ? null
                : cacheDirectory.resolve("kiln-" + architecture + "-" + key(source, options) + ".cubin");
    }

    private String key(String source, List<String> options) {
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            sha.update(("nvrtc " + nvrtc.version() + "\n" + String.join(" ", options) + "\n")
                    .getBytes(StandardCharsets.UTF_8));
            sha.update(source.getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(sha.digest(), 0, 12);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static void store(Path file, byte[] image) {
        try {
            Files.createDirectories(file.getParent());
            Path temp = Files.createTempFile(file.getParent(), file.getFileName().toString(), ".tmp");
            Files.write(temp, image);
            try {
                Files.move(temp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(temp, file, StandardCopyOption.REPLACE_EXISTING);
            }
        } catch (IOException | UnsupportedOperationException e) {
            LOG.debug("cannot cache kernels in {}: {}", file, e.toString());
        }
    }

    /** Whether the bytes start like an ELF file, as a CUBIN does. */
    public static boolean isElf(byte[] image) {
        return image.length > 4 && image[0] == 0x7f && image[1] == 'E' && image[2] == 'L' && image[3] == 'F';
    }
}
