package dev.kiln.backend.cpu.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CpuTopologyTest {
    @Test
    void hyperThreadsOfOneCoreCountOnce(@TempDir Path sys) throws IOException {
        // Four logical CPUs: two cores with two threads each; a fifth CPU, on a third core, is offline.
        String[] coreOfCpu = {"0", "1", "0", "1", "2"};
        for (int i = 0; i < coreOfCpu.length; i++) {
            Path topology = Files.createDirectories(sys.resolve("cpu" + i).resolve("topology"));
            Files.writeString(topology.resolve("core_id"), coreOfCpu[i] + "\n");
            Files.writeString(topology.resolve("physical_package_id"), "0\n");
        }
        Files.writeString(sys.resolve("cpu4").resolve("online"), "0\n");
        Files.createDirectories(sys.resolve("cpufreq"));
        assertEquals(2, CpuTopology.countCores(sys));
    }

    @Test
    void cpuinfoCountsDistinctCoresPerPackage() {
        List<String> lines = List.of(
                "processor\t: 0", "physical id\t: 0", "core id\t\t: 0", "",
                "processor\t: 1", "physical id\t: 0", "core id\t\t: 0", "",
                "processor\t: 2", "physical id\t: 1", "core id\t\t: 0", "",
                "processor\t: 3", "physical id\t: 1", "core id\t\t: 1");
        assertEquals(3, CpuTopology.countCoresFromCpuinfo(lines));
    }

    @Test
    void thisMachineHasAtLeastOneCore() {
        int cores = CpuTopology.physicalCores();
        assertTrue(cores >= 1 && cores <= Runtime.getRuntime().availableProcessors());
        assertTrue(CpuTopology.vectorBits() >= 64);
    }
}
