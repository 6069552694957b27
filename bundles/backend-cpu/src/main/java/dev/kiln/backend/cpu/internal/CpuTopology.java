package dev.kiln.backend.cpu.internal;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import jdk.incubator.vector.FloatVector;

/**
 * What the host CPU offers: physical cores, vector width, memory. Read from Linux's sysfs and procfs, with the JVM's
 * view as the fallback elsewhere.
 */
public final class CpuTopology {
    private CpuTopology() {}

    /**
     * Physical cores available to this process. Hyper-threads share a core's vector units, and memory-bound
     * kernels gain nothing from them, so the pool gets one thread per core. Capped by
     * {@link Runtime#availableProcessors()}, which honours CPU affinity and container limits.
     */
    public static int physicalCores() {
        int available = Runtime.getRuntime().availableProcessors();
        int cores = countCores(Path.of("/sys/devices/system/cpu"));
        if (cores <= 0) cores = countCoresFromCpuinfo(Path.of("/proc/cpuinfo"));
        return cores <= 0 ? available : Math.min(cores, available);
    }

    /** Distinct (package, core) pairs among the online logical CPUs under a sysfs cpu folder, or 0 if unreadable. */
    static int countCores(Path sysCpu) {
        Set<String> cores = new HashSet<>();
        try (DirectoryStream<Path> cpus = Files.newDirectoryStream(sysCpu, "cpu[0-9]*")) {
            for (Path cpu : cpus) {
                Path online = cpu.resolve("online");
                if (Files.isReadable(online) && Files.readString(online).trim().equals("0")) continue;
                Path topology = cpu.resolve("topology");
                Path coreId = topology.resolve("core_id");
                Path packageId = topology.resolve("physical_package_id");
                if (!Files.isReadable(coreId) || !Files.isReadable(packageId)) return 0;
                cores.add(Files.readString(packageId).trim() + ":" + Files.readString(coreId).trim());
            }
        } catch (IOException | SecurityException e) {
            return 0;
        }
        return cores.size();
    }

    /** Distinct (physical id, core id) pairs in a /proc/cpuinfo file, or 0 if it has none. */
    static int countCoresFromCpuinfo(Path cpuinfo) {
        try {
            return countCoresFromCpuinfo(Files.readAllLines(cpuinfo));
        } catch (IOException | SecurityException e) {
            return 0;
        }
    }

    static int countCoresFromCpuinfo(List<String> lines) {
        Set<String> cores = new HashSet<>();
        String physical = "0";
        String core = null;
        for (String line : lines) {
            int colon = line.indexOf(':');
            if (line.isBlank()) {
                if (core != null) cores.add(physical + ":" + core);
                physical = "0";
                core = null;
            } else if (colon > 0) {
                String key = line.substring(0, colon).trim();
                String value = line.substring(colon + 1).trim();
                if (key.equals("physical id")) physical = value;
                else if (key.equals("core id")) core = value;
            }
        }
        if (core != null) cores.add(physical + ":" + core);
        return cores.size();
    }

    /** The CPU's model name from /proc/cpuinfo, or the architecture name when unknown. */
    public static String modelName() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
                if (line.startsWith("model name")) {
                    int colon = line.indexOf(':');
                    if (colon > 0) return line.substring(colon + 1).trim();
                }
            }
        } catch (IOException | SecurityException e) {
            // fall through to the JVM's view
        }
        return System.getProperty("os.arch");
    }

    /** Total physical memory in bytes from /proc/meminfo, or -1 when unknown. */
    public static long memoryBytes() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
                if (line.startsWith("MemTotal:")) {
                    String[] parts = line.substring(9).trim().split("\\s+");
                    return Long.parseLong(parts[0]) * 1024L;
                }
            }
        } catch (IOException | SecurityException | NumberFormatException e) {
            // unknown
        }
        return -1;
    }

    /** Bits of the Vector API's preferred species on this CPU. */
    public static int vectorBits() {
        return FloatVector.SPECIES_PREFERRED.vectorBitSize();
    }
}
